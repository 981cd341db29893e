//! The servers of the test environment, started by `tests/env/cluster.sh` on free loopback
//! ports in a directory of their own, and stopped when the `Cluster` is dropped (or, should
//! the test process die, by the script's watcher).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use claimcheck::driver::Driver;

pub struct Cluster {
    dir: tempfile::TempDir,
    vars: BTreeMap<String, String>,
}

/// The object stores of the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    S3,
    Gcs,
    Azure,
}

impl Cluster {
    /// Starts the groups named (`kube`, `s3`, `gcs`, `azure`, comma-separated).
    pub fn up(groups: &str) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("claimcheck-env-")
            .tempdir()
            .expect("temp dir");
        let status = Command::new("bash")
            .arg(script())
            .args(["up", &dir.path().display().to_string(), "--only", groups])
            .args(["--watch", &std::process::id().to_string()])
            .status()
            .expect("cluster.sh runs");
        if !status.success() {
            panic!(
                "cluster.sh up failed; its logs are kept in {}",
                dir.keep().display()
            );
        }
        let vars = read_env(&dir.path().join("env"));
        Cluster { dir, vars }
    }

    pub fn var(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .unwrap_or_else(|| panic!("{key} is not in the environment file"))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills an object-store server (`minio`, `gcp-storage-emulator`, `azurite`) outright.
    pub fn kill(&self, server: &str) {
        let pid = std::fs::read_to_string(self.dir().join(format!("{server}.pid"))).expect("pid file");
        let status = Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "{server} killed");
    }

    /// Starts a killed object-store server again, on its port, with its data.
    pub fn restart(&self, server: &str) {
        let status = Command::new("bash")
            .arg(script())
            .args(["restart", &self.dir().display().to_string(), server])
            .status()
            .expect("cluster.sh runs");
        assert!(status.success(), "{server} restarted");
    }

    pub async fn kube(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.var("KUBECONFIG")).expect("kubeconfig");
        client(kubeconfig).await
    }

    /// A client authenticated as `user` by a certificate of the cluster's client CA: it may
    /// do nothing until an RBAC binding grants it something.
    pub async fn kube_as(&self, user: &str) -> kube::Client {
        let dir = self.dir().join(format!("user-{user}"));
        std::fs::create_dir_all(&dir).expect("user dir");
        let (key, csr, cert) = (dir.join("tls.key"), dir.join("tls.csr"), dir.join("tls.crt"));
        // Extensions make it an X.509 v3 certificate: rustls refuses v1 ones.
        let extensions = dir.join("client.ext");
        std::fs::write(
            &extensions,
            "keyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
        )
        .expect("ext file");
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).output().expect("openssl runs");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let path = |p: &Path| p.display().to_string();
        openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &path(&key),
        ]);
        openssl(&[
            "req",
            "-new",
            "-key",
            &path(&key),
            "-subj",
            &format!("/CN={user}"),
            "-out",
            &path(&csr),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &path(&csr),
            "-CA",
            self.var("CLIENT_CA_CERT_FILE"),
            "-CAkey",
            self.var("CLIENT_CA_KEY_FILE"),
            "-CAcreateserial",
            "-extfile",
            &path(&extensions),
            "-days",
            "1",
            "-out",
            &path(&cert),
        ]);
        let mut kubeconfig = kube::config::Kubeconfig::read_from(self.var("KUBECONFIG")).expect("kubeconfig");
        for named in &mut kubeconfig.auth_infos {
            if let Some(auth) = named.auth_info.as_mut() {
                auth.client_certificate_data = None;
                auth.client_key_data = None;
                auth.client_certificate = Some(path(&cert));
                auth.client_key = Some(path(&key));
            }
        }
        client(kubeconfig).await
    }
}

async fn client(kubeconfig: kube::config::Kubeconfig) -> kube::Client {
    claimcheck::tls::install_crypto_provider();
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .expect("config");
    kube::Client::try_from(config).expect("client")
}

impl Cluster {
    /// What a user would export to point claimcheck at this store.
    pub fn user_env(&self, store: Store) -> BTreeMap<String, String> {
        let pairs: Vec<(&str, String)> = match store {
            Store::S3 => vec![
                ("AWS_ENDPOINT", self.var("S3_ENDPOINT").into()),
                ("AWS_REGION", self.var("S3_REGION").into()),
                ("AWS_ACCESS_KEY_ID", self.var("S3_ACCESS_KEY_ID").into()),
                ("AWS_SECRET_ACCESS_KEY", self.var("S3_SECRET_ACCESS_KEY").into()),
                ("AWS_ALLOW_HTTP", "true".into()),
            ],
            // object_store writes through GCS's XML API, which fake-gcs-server lacks (its PR
            // #1164 is still open); gcp-storage-emulator serves it, and keeps lifecycle rules.
            Store::Gcs => vec![(
                "GOOGLE_SERVICE_ACCOUNT_KEY",
                serde_json::json!({
                    "gcs_base_url": self.var("GCS_EMULATOR_URL"),
                    "disable_oauth": true,
                    "client_email": "",
                    "private_key": "",
                    "private_key_id": "",
                })
                .to_string(),
            )],
            Store::Azure => vec![
                (
                    "AZURE_STORAGE_ACCOUNT_NAME",
                    self.var("AZURE_STORAGE_ACCOUNT").into(),
                ),
                ("AZURE_STORAGE_ACCOUNT_KEY", self.var("AZURE_STORAGE_KEY").into()),
                ("AZURE_STORAGE_ENDPOINT", self.var("AZURITE_BLOB_URL").into()),
                ("AZURE_ALLOW_HTTP", "true".into()),
            ],
        };
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// The store's URL, with `prefix` as its key prefix.
    pub fn url(&self, store: Store, prefix: &str) -> String {
        match store {
            Store::S3 => format!("s3://{}/{prefix}", self.var("S3_BUCKET")),
            Store::Gcs => format!("gs://{}/{prefix}", self.var("GCS_BUCKET")),
            Store::Azure => format!("az://{}/{prefix}", self.var("AZURE_CONTAINER")),
        }
    }

    /// Configured exactly as the user environment would configure it: object_store reads each
    /// of those variables as the option of the same name, lower-cased.
    pub fn options(&self, store: Store) -> BTreeMap<String, String> {
        self.user_env(store)
            .into_iter()
            .map(|(k, v)| (k.to_lowercase(), v))
            .collect()
    }

    pub fn driver(&self, store: Store, prefix: &str) -> Driver {
        Driver::open(&self.url(store, prefix), "", &self.options(store)).expect("driver opens")
    }

    /// Creates S3 bucket `bucket` in MinIO, as its owner would.
    pub async fn create_bucket(&self, bucket: &str) {
        use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
        let env = self.user_env(Store::S3);
        let credentials = Credentials::new(
            &env["AWS_ACCESS_KEY_ID"],
            &env["AWS_SECRET_ACCESS_KEY"],
            None,
            None,
            "test",
        );
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(env["AWS_REGION"].clone()))
            .endpoint_url(&env["AWS_ENDPOINT"])
            .credentials_provider(credentials)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .expect("bucket created");
    }

    /// The raw object store of the bucket, for what the proxy itself never does (list, delete).
    pub fn object_store(&self, store: Store) -> std::sync::Arc<dyn object_store::ObjectStore> {
        claimcheck::driver::cloud_store(self.url(store, "").trim_end_matches('/'), &self.options(store))
            .expect("store opens")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["down", &self.dir.path().display().to_string()])
            .status();
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/env/cluster.sh")
}

/// `KEY='value'` lines, as cluster.sh writes them (values never contain a quote).
fn read_env(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).expect("cluster.sh wrote its env file");
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect()
}
