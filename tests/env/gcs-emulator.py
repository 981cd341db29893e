"""Runs PyPI's gcp-storage-emulator with the parts of GCS's XML API that it leaves out:
`ETag` and `Last-Modified` on object PUT and GET, object DELETE, and ListObjectsV2.

object_store (the Rust client claimcheck stores through) speaks the XML API and refuses an
answer without those headers. fake-gcs-server has no XML PUT at all (its pull request #1164
is still open), so this patched emulator is the GCS of the test environment; storage,
buckets and lifecycle rules are the package's own. Arguments are the emulator's own.
"""

import sys
from datetime import datetime, timezone
from email.utils import formatdate
from http import HTTPStatus
from xml.sax.saxutils import escape

from gcp_storage_emulator import server
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects


def with_object_headers(handler):
    def handle(request, response, storage, *args, **kwargs):
        result = handler(request, response, storage, *args, **kwargs)
        try:
            obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
        except NotFound:
            return result
        if obj.get("etag"):
            response["ETag"] = f'"{obj["etag"]}"'
        updated = datetime.strptime(obj["updated"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        response["Last-Modified"] = formatdate(updated.timestamp(), usegmt=True)
        return result

    return handle


def xml_list(request, response, storage, *args, **kwargs):
    """ListObjectsV2, enough for object_store: prefix, delimiter, one page."""
    first = lambda name: (request.query.get(name) or [None])[0]  # noqa: E731
    bucket = request.params["bucket_name"]
    try:
        objs, prefixes = storage.get_file_list(bucket, first("prefix"), first("delimiter"))
    except NotFound:
        response.status = HTTPStatus.NOT_FOUND
        return
    contents = "".join(
        f"<Contents><Key>{escape(o['name'])}</Key><LastModified>{o['updated']}</LastModified>"
        f"<ETag>\"{o.get('etag', '')}\"</ETag><Size>{o['size']}</Size></Contents>"
        for o in objs
    )
    common = "".join(f"<CommonPrefixes><Prefix>{escape(p)}</Prefix></CommonPrefixes>" for p in prefixes)
    response.write_file(
        f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>{escape(bucket)}</Name>'
        f"<KeyCount>{len(objs)}</KeyCount><IsTruncated>false</IsTruncated>{contents}{common}</ListBucketResult>",
        "application/xml",
    )


def xml_delete(request, response, storage, *args, **kwargs):
    objects.delete(request, response, storage, *args, **kwargs)
    if response.status == HTTPStatus.OK:
        response.status = HTTPStatus.NO_CONTENT


OBJECT = r"^/(?P<bucket_name>[-.\w]+)/(?P<object_id>.*[^/]+)$"
BUCKET = r"^/(?P<bucket_name>[-.\w]+)/?$"
XML_OBJECT = {
    server.GET: with_object_headers(objects.download),
    server.PUT: with_object_headers(objects.xml_upload),
    server.DELETE: xml_delete,
}
# The object route stays where the package puts it, after the JSON API's; the bucket listing
# comes last, after every other route.
server.HANDLERS = tuple((regex, XML_OBJECT if regex == OBJECT else handlers) for regex, handlers in server.HANDLERS) + (
    (BUCKET, {server.GET: xml_list}),
)
assert any(regex == OBJECT for regex, _ in server.HANDLERS), "the emulator's object route moved"

from gcp_storage_emulator.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
