#!/usr/bin/env bash
# Builds the Java SDK test worker (this directory) once per source version: resolves pom.xml's
# classpath from Maven Central into a local repository under the cache, compiles src/ with javac,
# and prints the directory, $CLAIMCHECK_CACHE/worker-java-<hash of pom.xml, src, build.sh>, which
# holds classes/ and classpath.txt. Run the worker as
#   java -cp "$dir/classes:$(cat "$dir/classpath.txt")" claimcheck.Main worker
# A second run finds the marker and does nothing. Progress goes to stderr, the path to stdout.
set -euo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../env/lib.sh
source "$src/../env/lib.sh"

hash="$(cd "$src" && cat pom.xml build.sh src/claimcheck/*.java | sha256sum | cut -c1-16)"
out="$cache/worker-java-$hash"

build() {
    [[ -f "$out/.built" ]] && return 0
    local start=$SECONDS
    log "worker-java: building $out"
    rm -rf "$out" && mkdir -p "$out/classes"
    # Maven's own plugins come from Central too: the first run on a machine downloads them.
    (cd "$src" && mvn -B -q -Dmaven.repo.local="$cache/m2" dependency:build-classpath \
        -Dmdep.outputFile="$out/classpath.txt" >&2)
    nice -n 10 javac --release 17 -d "$out/classes" -cp "$(cat "$out/classpath.txt")" "$src"/src/claimcheck/*.java
    touch "$out/.built"
    log "worker-java: built in $((SECONDS - start)) s"
}

mkdir -p "$cache"   # on a new machine the lock below is its first file
(flock 9 && build) 9>"$cache/.lock-worker-java"
echo "$out"
