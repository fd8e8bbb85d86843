//! A Kafka-protocol broker behind TLS with SASL (../shared/TOOLS.md, verified recipe):
//! tansu 0.6 on persistent sqlite storage, SCRAM users created while it runs without
//! `--authentication`, then restarted with it; TLS terminated in front of it by `socat
//! OPENSSL-LISTEN` (tansu 0.6 accepts `--cert/--key` but never uses them), with certificates made
//! here by the `openssl` CLI. Clients connect to the TLS port; the broker advertises it, so
//! metadata sends them back through TLS.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::ClientConfig;

use super::Proc;
use super::broker::{tansu, wait_for};

pub const USER: &str = "ddtwatch";
pub const PASSWORD: &str = "s3cret-scram-pw";
pub const USER_256: &str = "ddtwatch256";

pub struct SecureBroker {
    pub dir: tempfile::TempDir,
    /// host:port of the TLS listener (what clients use).
    pub brokers: String,
    /// The CA that signed the broker's certificate.
    pub ca: PathBuf,
    /// A CA that did not (for the untrusted-CA test).
    pub other_ca: PathBuf,
    _broker: Proc,
    _tls: Proc,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out =
        Command::new("openssl").current_dir(dir).args(args).output().expect("openssl CLI (scripts/test installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA (`{name}.pem`, `{name}.key`) in `dir`.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// `server.pem`/`server.key` for 127.0.0.1, signed by the CA `ca`.
fn make_server_cert(dir: &Path, ca: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
}

fn tansu_cmd(args: &[&str]) {
    let st = Command::new(tansu()).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
    assert!(st.success(), "tansu {args:?}");
}

fn spawn_tansu(cwd: &Path, args: &[&str]) -> Proc {
    let logs = std::env::var_os("DDTWATCH_TEST_LOGS").is_some();
    Proc(
        Command::new(tansu())
            .current_dir(cwd)
            .args(args)
            .stdout(if logs { Stdio::inherit() } else { Stdio::null() })
            .stderr(if logs { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .unwrap(),
    )
}

impl SecureBroker {
    /// Starts the broker with SCRAM-SHA-512 user [`USER`] and SCRAM-SHA-256 user [`USER_256`]
    /// (both with [`PASSWORD`]) and the topics ddt.events (3 partitions), ddt.events.dlq,
    /// ddt.state.
    pub fn start() -> SecureBroker {
        let dir = tempfile::tempdir().unwrap();
        make_ca(dir.path(), "ca");
        make_ca(dir.path(), "other-ca");
        make_server_cert(dir.path(), "ca");
        let inner = super::free_port();
        let tls = super::free_port();
        let inner_url = format!("tcp://127.0.0.1:{inner}");
        let tls_url = format!("tcp://127.0.0.1:{tls}");
        // 1. Without authentication: users and topics.
        {
            let _setup = spawn_tansu(
                dir.path(),
                &[
                    "broker",
                    "--listener-url",
                    &inner_url,
                    "--advertised-listener-url",
                    &inner_url,
                    "--storage-engine",
                    "sqlite://tansu.db",
                ],
            );
            wait_for("tansu (setup)", Duration::from_secs(20), || {
                std::net::TcpStream::connect(("127.0.0.1", inner)).is_ok()
            });
            tansu_cmd(&["user", "create", "--broker", &inner_url, "--mechanism", "scram512", USER, PASSWORD]);
            tansu_cmd(&["user", "create", "--broker", &inner_url, "--mechanism", "scram256", USER_256, PASSWORD]);
            for (topic, parts) in [("ddt.events", "3"), ("ddt.events.dlq", "1"), ("ddt.state", "1")] {
                tansu_cmd(&["topic", "create", topic, "--partitions", parts, "--broker", &inner_url]);
            }
        }
        wait_for("setup broker gone", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", inner)).is_err()
        });
        // 2. With authentication, advertising the TLS port.
        let broker = spawn_tansu(
            dir.path(),
            &[
                "broker",
                "--listener-url",
                &inner_url,
                "--advertised-listener-url",
                &tls_url,
                "--storage-engine",
                "sqlite://tansu.db",
                "--authentication",
            ],
        );
        wait_for("tansu (authenticating)", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", inner)).is_ok()
        });
        // 3. TLS in front.
        let socat = Proc(
            Command::new("socat")
                .current_dir(dir.path())
                .arg(format!(
                    "OPENSSL-LISTEN:{tls},bind=127.0.0.1,cert=server.pem,key=server.key,verify=0,reuseaddr,fork"
                ))
                .arg(format!("TCP:127.0.0.1:{inner}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("socat (scripts/test installs it)"),
        );
        wait_for("TLS listener", Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", tls)).is_ok());
        let ca = dir.path().join("ca.pem");
        let other_ca = dir.path().join("other-ca.pem");
        SecureBroker { dir, brokers: format!("127.0.0.1:{tls}"), ca, other_ca, _broker: broker, _tls: socat }
    }

    /// Client settings for SASL_SSL with `mechanism` as `user`.
    pub fn client(&self, mechanism: &str, user: &str, password: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("security.protocol", "sasl_ssl")
            .set("sasl.mechanism", mechanism)
            .set("sasl.username", user)
            .set("sasl.password", password)
            .set("ssl.ca.location", self.ca.to_string_lossy().as_ref());
        c
    }

    /// Produces `lines` to ddt.events over SASL_SSL + SCRAM-SHA-512, keyed by deployment_id.
    pub fn produce(&self, lines: &[String]) {
        super::broker::produce_with(self.client("SCRAM-SHA-512", USER, PASSWORD), lines);
    }

    /// A `run` config consuming this broker over SASL_SSL with `mechanism`/`user`, the password
    /// read from a file (as the README's secured example), its API on `port`.
    pub fn run_config(&self, dir: &Path, port: u16, mechanism: &str, user: &str, password: &str, ca: &Path) -> PathBuf {
        let pw = dir.join("kafka-password");
        std::fs::write(&pw, format!("{password}\n")).unwrap();
        let path = super::broker::run_config(dir, &self.brokers, port);
        let mut v: serde_norway::Value = serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        v["sources"] = serde_norway::from_str(&format!(
            "[{{kind: kafka, brokers: \"{}\", topics: [ddt.events], group_id: ddtwatch-test, \
             properties: {{security.protocol: sasl_ssl, sasl.mechanism: {mechanism}, sasl.username: {user}, \
             ssl.ca.location: \"{}\", session.timeout.ms: \"6000\", heartbeat.interval.ms: \"500\"}}, \
             secret_properties: {{sasl.password: {{file: \"{}\"}}}}}}]",
            self.brokers,
            ca.display(),
            pw.display()
        ))
        .unwrap();
        std::fs::write(&path, serde_norway::to_string(&v).unwrap()).unwrap();
        path
    }
}
