//! A real S3-compatible server (`s3s-fs`: the S3 protocol over a directory, with SigV4
//! authentication and presigned URLs checked) on a free port, in a thread of its own so that a
//! test may call it with blocking HTTP.

use std::path::PathBuf;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

pub const ACCESS_KEY: &str = "natter-test-access";
pub const SECRET_KEY: &str = "natter-test-secret-key-0123456789";
pub const BUCKET: &str = "natter-media";

/// A running S3 server with one bucket.
pub struct S3 {
    pub port: u16,
    pub root: tempfile::TempDir,
}

impl S3 {
    pub fn start() -> S3 {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join(BUCKET)).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let dir = root.path().to_owned();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let fs = s3s_fs::FileSystem::new(dir).unwrap();
                let mut b = S3ServiceBuilder::new(fs);
                b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
                let service = b.build();
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((sock, _)) = listener.accept().await else {
                        continue;
                    };
                    let service = service.clone();
                    tokio::spawn(async move {
                        let _ = ConnBuilder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(sock), service)
                            .await;
                    });
                }
            });
        });
        S3 { port, root }
    }

    /// The `[media]` config that puts natter's media in this server's bucket.
    pub fn config(&self, extra: &str) -> String {
        format!(
            "[media]\nbackend = \"s3\"\n{extra}\n[media.s3]\nbucket = \"{BUCKET}\"\n\
             endpoint = \"http://127.0.0.1:{port}\"\nregion = \"us-east-1\"\n\
             access_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{SECRET_KEY}\"\n",
            port = self.port
        )
    }

    /// Where an object's bytes lie on disk.
    pub fn object_path(&self, id: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(id)
    }
}
