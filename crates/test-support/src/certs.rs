//! Certificates for TLS tests, made with the openssl CLI: a test CA, a second CA that signed
//! nothing the tests serve, and a server certificate for `localhost` and 127.0.0.1 from the first.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The PEM files [`make`] wrote.
#[derive(Debug, Clone)]
pub struct Certs {
    /// The test CA's certificate: what a client must trust.
    pub ca: PathBuf,
    /// Another CA's certificate, which signed none of the others.
    pub other_ca: PathBuf,
    /// The server's certificate (`localhost`, 127.0.0.1), signed by `ca`, valid two days.
    pub server_cert: PathBuf,
    /// Its private key (mode 600, owned by whoever runs the test).
    pub server_key: PathBuf,
}

/// Makes the test CAs and the server certificate in `dir` (P-256 keys).
pub fn make(dir: &Path) -> Certs {
    for ca in ["ca", "other-ca"] {
        make_ca(dir, ca);
    }
    make_server_cert(dir);
    Certs {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    }
}

/// Makes a self-signed CA, its key in `<ca>.key` and its certificate in `<ca>.pem`.
fn make_ca(dir: &Path, ca: &str) {
    let path = |name: &str| dir.join(name).display().to_string();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &path(&format!("{ca}.key")),
        "-out",
        &path(&format!("{ca}.pem")),
        "-days",
        "2",
        "-subj",
        &format!("/CN=pushq test {ca}"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
}

/// Makes the server's key (`server.key`, mode 600) and its certificate for `localhost` and
/// 127.0.0.1 (`server.pem`), signed by the test CA, which must exist already.
fn make_server_cert(dir: &Path) {
    let path = |name: &str| dir.join(name).display().to_string();
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &path("server.key"),
        "-out",
        &path("server.csr"),
        "-subj",
        "/CN=localhost",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &path("server.csr"),
        "-CA",
        &path("ca.pem"),
        "-CAkey",
        &path("ca.key"),
        "-CAcreateserial",
        "-out",
        &path("server.pem"),
        "-days",
        "2",
        "-extfile",
        &path("server.ext"),
    ]);
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl CLI on PATH");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
