//! Signed-revision fixtures, made offline by the test suite: a small PKI (openssl CLI) and a
//! signer that writes `_sigs/<name>.json` entries exactly as `pvr sig add` does, with a knob
//! for each way a signature can be wrong.
//!
//! The PKI is made once per test process (first call to [`pki`]) under the cargo target's
//! temp dir (`sig-pki-<pid>`, removed by a later test process once this one has exited, so
//! it can be inspected after a failure). It holds, for
//! each of [`Alg::Es256`] (EC P-256), [`Alg::Es384`] (EC P-384) and [`Alg::Rs256`] (RSA 2048):
//! a root CA, a sub-CA it signs, and a codeSigning leaf the sub-CA signs; plus
//! a second root that no device trusts with a leaf of its own ([`Signer::Untrusted`]), a leaf
//! valid only in 2020 ([`Signer::Expired`]) and a leaf whose only EKU is serverAuth
//! ([`Signer::ServerAuthOnly`]), the last two under the P-256 sub-CA.
//!
//! The signer is independent of Tern's verifier on purpose: the payload is serde_json's
//! compact writer over a sorted map, which is byte-equal to pvr's canonical JSON for states
//! whose strings hold no control characters and whose numbers are integers (every state
//! these fixtures sign). The signature comes from `openssl dgst -sign`; ECDSA's DER output
//! is converted to the raw R‖S that JWS (and pvr) use.
//!
//! Typical use:
//! ```ignore
//! let mut state = sig::sample_state();
//! sig::sign(&mut state, &SigSpec::part("app", Signer::Leaf(Alg::Es256)).include("#spec"));
//! let etc = TempDir::new("etc");
//! sig::pki().install_trust(etc.path(), &[sig::pki().root(Alg::Es256)], None);
//! ```

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::{Value, json};

/// The key type of a signer, named by the JWS `alg` pvr picks for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    /// EC P-256, ECDSA with SHA-256.
    Es256,
    /// EC P-384, ECDSA with SHA-384.
    Es384,
    /// RSA 2048, PKCS#1 v1.5 with SHA-256.
    Rs256,
}

impl Alg {
    pub const ALL: [Alg; 3] = [Alg::Es256, Alg::Es384, Alg::Rs256];

    /// The protected header's `alg`.
    pub fn jws(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::Rs256 => "RS256",
        }
    }

    fn dir(self) -> &'static str {
        match self {
            Alg::Es256 => "p256",
            Alg::Es384 => "p384",
            Alg::Rs256 => "rsa",
        }
    }

    fn genpkey_args(self) -> &'static [&'static str] {
        match self {
            Alg::Es256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            Alg::Es384 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            Alg::Rs256 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        }
    }

    fn digest(self) -> &'static str {
        match self {
            Alg::Es384 => "-sha384",
            _ => "-sha256",
        }
    }

    /// Bytes of R (and of S) in a raw ECDSA signature; `None` for RSA.
    fn scalar_len(self) -> Option<usize> {
        match self {
            Alg::Es256 => Some(32),
            Alg::Es384 => Some(48),
            Alg::Rs256 => None,
        }
    }
}

/// Who signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signer {
    /// The codeSigning leaf of `alg`'s root → sub-CA → leaf chain. `x5c` = leaf, sub-CA.
    Leaf(Alg),
    /// A P-256 leaf of the untrusted root (`x5c` = leaf only).
    Untrusted,
    /// A P-256 codeSigning leaf under the P-256 sub-CA, valid 2020-01-01 … 2021-01-01.
    Expired,
    /// A P-256 leaf under the P-256 sub-CA whose only extended key usage is serverAuth.
    ServerAuthOnly,
}

impl Signer {
    pub fn alg(self) -> Alg {
        match self {
            Signer::Leaf(a) => a,
            _ => Alg::Es256,
        }
    }
}

/// One leaf's files.
#[derive(Clone, Debug)]
pub struct LeafFiles {
    /// PKCS#8 PEM private key.
    pub key: PathBuf,
    /// The leaf certificate (PEM).
    pub cert: PathBuf,
    /// Leaf then issuing sub-CA (PEM), what `pvr sig --x5c` is given.
    pub chain: PathBuf,
    /// The leaf's public key as `pub.pem` (PEM SubjectPublicKeyInfo).
    pub pub_pem: PathBuf,
}

/// The fixture PKI. Every path is a PEM file.
pub struct Pki {
    pub dir: PathBuf,
}

static PKI: OnceLock<Pki> = OnceLock::new();

/// The PKI of this test process, made on first use (a few seconds: three RSA keys).
pub fn pki() -> &'static Pki {
    PKI.get_or_init(Pki::generate)
}

impl Pki {
    /// The root CA certificate of `alg`'s chain: the anchor a device trusts.
    pub fn root(&self, alg: Alg) -> PathBuf {
        self.dir.join(alg.dir()).join("root.crt")
    }
    /// The sub-CA certificate of `alg`'s chain (an anchor too, for `--trust SUB`).
    pub fn sub(&self, alg: Alg) -> PathBuf {
        self.dir.join(alg.dir()).join("sub.crt")
    }
    /// The root no device trusts.
    pub fn untrusted_root(&self) -> PathBuf {
        self.dir.join("untrusted").join("root.crt")
    }
    /// The files of a signer.
    pub fn leaf(&self, signer: Signer) -> LeafFiles {
        let dir = match signer {
            Signer::Leaf(a) => self.dir.join(a.dir()).join("leaf"),
            Signer::Untrusted => self.dir.join("untrusted").join("leaf"),
            Signer::Expired => self.dir.join("p256").join("expired"),
            Signer::ServerAuthOnly => self.dir.join("p256").join("serverauth"),
        };
        LeafFiles {
            key: dir.with_extension("key"),
            cert: dir.with_extension("crt"),
            chain: dir.with_extension("chain.pem"),
            pub_pem: dir.with_extension("pub.pem"),
        }
    }

    /// Writes a device's trust as Tern (and Pantavisor) read it: the PEM files `anchors`
    /// concatenated into `<etc>/pantavisor/pvs/trust/ca-certificates.crt`, and `pub_pem`
    /// copied to `<etc>/pantavisor/pvs/trust/pub.pem`. Returns the trust directory.
    pub fn install_trust(
        &self,
        etc: &Path,
        anchors: &[PathBuf],
        pub_pem: Option<&Path>,
    ) -> PathBuf {
        let trust = etc.join("pantavisor/pvs/trust");
        std::fs::create_dir_all(&trust).unwrap();
        let mut bundle = Vec::new();
        for a in anchors {
            bundle.extend(std::fs::read(a).unwrap());
        }
        std::fs::write(trust.join("ca-certificates.crt"), bundle).unwrap();
        if let Some(p) = pub_pem {
            std::fs::copy(p, trust.join("pub.pem")).unwrap();
        }
        trust
    }

    fn generate() -> Pki {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("sig-pki-{}", std::process::id()));
        remove_stale_pkis(dir.parent().unwrap());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        write_ext_files(&dir);
        for alg in Alg::ALL {
            let d = dir.join(alg.dir());
            std::fs::create_dir_all(&d).unwrap();
            let root = Ca::root(&d, "root", alg, &format!("Tern Test Root ({})", alg.jws()));
            let sub = root.issue_ca(&d, "sub", &format!("Tern Test Sub CA ({})", alg.jws()));
            sub.issue_leaf(
                &d.join("leaf"),
                alg,
                &format!("Tern Test Signer ({})", alg.jws()),
                "leaf.ext",
            );
            if alg == Alg::Es256 {
                sub.issue_expired_leaf(&d.join("expired"), "Tern Test Expired Signer");
                sub.issue_leaf(
                    &d.join("serverauth"),
                    alg,
                    "Tern Test Server-Auth Signer",
                    "serverauth.ext",
                );
            }
        }
        let u = dir.join("untrusted");
        std::fs::create_dir_all(&u).unwrap();
        let root = Ca::root(&u, "root", Alg::Es256, "Tern Untrusted Root");
        root.issue_leaf(
            &u.join("leaf"),
            Alg::Es256,
            "Tern Untrusted Signer",
            "leaf.ext",
        );
        Pki { dir }
    }
}

/// PKIs of test processes that are gone: their pid has no `/proc` entry.
fn remove_stale_pkis(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("sig-pki-")
            && !Path::new("/proc").join(pid).exists()
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn write_ext_files(dir: &Path) {
    let ski = "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n";
    std::fs::write(
        dir.join("ca.ext"),
        format!("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n{ski}"),
    )
    .unwrap();
    std::fs::write(
        dir.join("leaf.ext"),
        format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n{ski}"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("serverauth.ext"),
        format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n{ski}"
        ),
    )
    .unwrap();
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl CLI is needed to make the signature fixtures");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

struct Ca {
    dir: PathBuf,
    key: PathBuf,
    cert: PathBuf,
}

impl Ca {
    fn root(dir: &Path, name: &str, alg: Alg, cn: &str) -> Ca {
        let key = dir.join(format!("{name}.key"));
        let cert = dir.join(format!("{name}.crt"));
        genkey(&key, alg);
        openssl(&[
            "req",
            "-new",
            "-x509",
            "-key",
            p(&key),
            "-subj",
            &format!("/CN={cn}"),
            "-days",
            "3650",
            "-sha256",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            p(&cert),
        ]);
        Ca {
            dir: dir.to_path_buf(),
            key,
            cert,
        }
    }

    fn ext(&self, name: &str) -> PathBuf {
        self.dir.parent().unwrap().join(name)
    }

    fn issue_ca(&self, dir: &Path, name: &str, cn: &str) -> Ca {
        let key = dir.join(format!("{name}.key"));
        let cert = dir.join(format!("{name}.crt"));
        let alg = key_alg_of(&self.key);
        genkey(&key, alg);
        self.sign_csr(&key, &cert, cn, "ca.ext");
        Ca {
            dir: dir.to_path_buf(),
            key,
            cert,
        }
    }

    fn sign_csr(&self, key: &Path, cert: &Path, cn: &str, ext: &str) {
        let csr = cert.with_extension("csr");
        openssl(&[
            "req",
            "-new",
            "-key",
            p(key),
            "-subj",
            &format!("/CN={cn}"),
            "-out",
            p(&csr),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            p(&csr),
            "-CA",
            p(&self.cert),
            "-CAkey",
            p(&self.key),
            "-CAcreateserial",
            "-days",
            "3650",
            "-sha256",
            "-extfile",
            p(&self.ext(ext)),
            "-out",
            p(cert),
        ]);
    }

    /// `stem.key`, `stem.crt`, `stem.chain.pem` (leaf, then this CA unless it is a root),
    /// `stem.pub.pem`.
    fn issue_leaf(&self, stem: &Path, alg: Alg, cn: &str, ext: &str) {
        let key = stem.with_extension("key");
        let cert = stem.with_extension("crt");
        genkey(&key, alg);
        self.sign_csr(&key, &cert, cn, ext);
        self.finish_leaf(stem);
    }

    /// A codeSigning leaf valid only in 2020: `openssl x509 -req` of OpenSSL 3.0 cannot
    /// backdate, `openssl ca` can.
    fn issue_expired_leaf(&self, stem: &Path, cn: &str) {
        let key = stem.with_extension("key");
        let cert = stem.with_extension("crt");
        let csr = stem.with_extension("csr");
        genkey(&key, Alg::Es256);
        openssl(&[
            "req",
            "-new",
            "-key",
            p(&key),
            "-subj",
            &format!("/CN={cn}"),
            "-out",
            p(&csr),
        ]);
        let db = self.dir.join("ca-db");
        std::fs::create_dir_all(&db).unwrap();
        std::fs::write(db.join("index.txt"), "").unwrap();
        std::fs::write(db.join("serial"), "1000\n").unwrap();
        let cnf = db.join("ca.cnf");
        std::fs::write(
            &cnf,
            format!(
                "[ca]\ndefault_ca = d\n[d]\ndatabase = {db}/index.txt\nnew_certs_dir = {db}\n\
                 serial = {db}/serial\ndefault_md = sha256\npolicy = any\nunique_subject = no\n\
                 [any]\ncommonName = supplied\n",
                db = p(&db)
            ),
        )
        .unwrap();
        openssl(&[
            "ca",
            "-batch",
            "-notext",
            "-config",
            p(&cnf),
            "-cert",
            p(&self.cert),
            "-keyfile",
            p(&self.key),
            "-in",
            p(&csr),
            "-out",
            p(&cert),
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20210101000000Z",
            "-extfile",
            p(&self.ext("leaf.ext")),
        ]);
        self.finish_leaf(stem);
    }

    fn finish_leaf(&self, stem: &Path) {
        let cert = stem.with_extension("crt");
        let mut chain = std::fs::read(&cert).unwrap();
        // pvr's x5c carries leaf and sub-CA, never the root.
        if self.cert.file_name().is_some_and(|n| n != "root.crt") {
            chain.extend(std::fs::read(&self.cert).unwrap());
        }
        std::fs::write(stem.with_extension("chain.pem"), chain).unwrap();
        openssl(&[
            "pkey",
            "-in",
            p(&stem.with_extension("key")),
            "-pubout",
            "-out",
            p(&stem.with_extension("pub.pem")),
        ]);
    }
}

fn genkey(key: &Path, alg: Alg) {
    let mut args = vec!["genpkey"];
    args.extend_from_slice(alg.genpkey_args());
    args.extend_from_slice(&["-out", p(key)]);
    openssl(&args);
}

fn key_alg_of(key: &Path) -> Alg {
    let text = Command::new("openssl")
        .args(["pkey", "-in", p(key), "-noout", "-text"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    if text.contains("P-384") || text.contains("secp384r1") {
        Alg::Es384
    } else if text.contains("P-256") || text.contains("prime256v1") {
        Alg::Es256
    } else {
        Alg::Rs256
    }
}

/// One signature to add, and what to get wrong in it. Build with [`SigSpec::part`] or
/// [`SigSpec::raw`], then chain the knobs.
#[derive(Clone, Debug)]
pub struct SigSpec {
    /// The state key is `_sigs/<name>.json`.
    pub name: String,
    pub signer: Signer,
    /// `None` leaves `pvs.include` out of the header.
    pub include: Option<Vec<String>>,
    /// `None` leaves `pvs.exclude` out of the header.
    pub exclude: Option<Vec<String>>,
    /// The header's `typ` (`PVS` unless changed).
    pub typ: String,
    /// The header's `alg` (the signer's unless changed; the bytes are still made with the
    /// signer's real algorithm).
    pub alg: String,
    /// `x5c` (leaf, then sub-CA) in the header; without it only the `jwk` names the key.
    pub x5c: bool,
    /// Flip one bit of the signature bytes.
    pub flip_signature: bool,
    /// Keep the JWS `payload` member (`pvr sig add --with-payload`).
    pub with_payload: bool,
}

impl SigSpec {
    /// What `pvr sig add --part PART` makes: include `PART/**`, `_config/PART/**`; exclude
    /// `PART/src.json`, `_sigs/PART.json`.
    pub fn part(part: &str, signer: Signer) -> SigSpec {
        SigSpec {
            name: part.to_string(),
            signer,
            include: Some(vec![format!("{part}/**"), format!("_config/{part}/**")]),
            exclude: Some(vec![
                format!("{part}/src.json"),
                format!("_sigs/{part}.json"),
            ]),
            typ: "PVS".into(),
            alg: signer.alg().jws().into(),
            x5c: true,
            flip_signature: false,
            with_payload: false,
        }
    }

    /// What `pvr sig add --raw NAME` makes: include `**`, exclude `_sigs/NAME.json` and the
    /// `_sigs/.json` pvr appends for the empty part.
    pub fn raw(name: &str, signer: Signer) -> SigSpec {
        SigSpec {
            include: Some(vec!["**".into()]),
            exclude: Some(vec![format!("_sigs/{name}.json"), "_sigs/.json".into()]),
            ..SigSpec::part(name, signer)
        }
    }

    /// Adds an include glob (e.g. `#spec`, so a strict device sees the state's spec covered).
    pub fn include(mut self, glob: &str) -> SigSpec {
        self.include.get_or_insert_with(Vec::new).push(glob.into());
        self
    }
    /// Adds an exclude glob.
    pub fn exclude(mut self, glob: &str) -> SigSpec {
        self.exclude.get_or_insert_with(Vec::new).push(glob.into());
        self
    }
    pub fn no_include(mut self) -> SigSpec {
        self.include = None;
        self
    }
    pub fn no_exclude(mut self) -> SigSpec {
        self.exclude = None;
        self
    }
    pub fn typ(mut self, typ: &str) -> SigSpec {
        self.typ = typ.into();
        self
    }
    pub fn alg(mut self, alg: &str) -> SigSpec {
        self.alg = alg.into();
        self
    }
    /// No `x5c`: the key is named only by the embedded `jwk` (which a verifier must not trust).
    pub fn jwk_only(mut self) -> SigSpec {
        self.x5c = false;
        self
    }
    pub fn flip_signature(mut self) -> SigSpec {
        self.flip_signature = true;
        self
    }
    pub fn with_payload(mut self) -> SigSpec {
        self.with_payload = true;
        self
    }
}

/// A small state in the shape a device runs: spec, a BSP, one container with config, an
/// object, a `src.json`.
pub fn sample_state() -> Value {
    json!({
        "#spec": "pantavisor-service-system@1",
        "bsp/run.json": {"addon": [], "firmware": "firmware.squashfs", "initrd": "pantavisor",
                         "linux": "kernel.img", "modules": "modules.squashfs"},
        "bsp/kernel.img": "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4",
        "bsp/pantavisor": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "bsp/modules.squashfs": "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
        "bsp/firmware.squashfs": "fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9",
        "app/run.json": {"#spec": "service-manifest-run@1", "name": "app", "type": "lxc",
                         "root-volume": "root.squashfs", "config": "lxc.container.conf",
                         "storage": {}, "volumes": [], "restart_policy": "container"},
        "app/root.squashfs": "baa5a0964d3320fbc0c6a922140453c8513ea24ab8fd0577034804a967248096",
        "app/lxc.container.conf": "4d967a30111bf29f0eba01c448b375c1629b2fed01cdfcc3aed91f1b57d5dd5e",
        "app/src.json": {"#spec": "service-manifest-src@1", "docker_name": "example/app",
                         "docker_tag": "1.0"},
        "_config/app/etc/app.conf": "29e3d6e8a1b5fb46ad2a4f5a7c12b1c4b86bd3a8b8e8bd1cf5b6bd5ed1d8d1a9",
        "device.json": {"groups": [{"name": "root", "restart_policy": "system", "timeout": 30}]}
    })
}

/// Adds the signature `spec` describes to `state` (key `_sigs/<name>.json`), computed over
/// `state` as it is now. Returns the key.
pub fn sign(state: &mut Value, spec: &SigSpec) -> String {
    let files = pki().leaf(spec.signer);
    let real_alg = spec.signer.alg();
    let mut pvs = serde_json::Map::new();
    if let Some(i) = &spec.include {
        pvs.insert("include".into(), json!(i));
    }
    if let Some(e) = &spec.exclude {
        pvs.insert("exclude".into(), json!(e));
    }
    let mut header = json!({
        "alg": spec.alg,
        "jwk": jwk_of(&files.pub_pem, real_alg),
        "pvs": Value::Object(pvs),
        "typ": spec.typ,
    });
    if spec.x5c {
        header["x5c"] = json!(
            pem_ders(&files.chain)
                .iter()
                .map(|d| b64(d, STD))
                .collect::<Vec<_>>()
        );
    }
    let protected = b64(serde_json::to_string(&header).unwrap().as_bytes(), URL);
    let payload = serde_json::to_string(&select(
        state,
        spec.include.as_deref().unwrap_or(&[]),
        spec.exclude.as_deref().unwrap_or(&[]),
    ))
    .unwrap();
    let payload_b64 = b64(payload.as_bytes(), URL);
    let input = format!("{protected}.{payload_b64}");
    let mut signature = openssl_sign(&files.key, real_alg, input.as_bytes());
    if spec.flip_signature {
        let mid = signature.len() / 2;
        signature[mid] ^= 0x01;
    }
    let mut entry = json!({
        "#spec": "pvs@2",
        "protected": protected,
        "signature": b64(&signature, URL),
    });
    if spec.with_payload {
        entry["payload"] = json!(payload_b64);
    }
    let key = format!("_sigs/{}.json", spec.name);
    state[key.as_str()] = entry;
    key
}

/// `state` signed by one `pvr sig add --part PART` per part (plus `#spec` and `device.json`
/// in the first), so a strict device finds every key covered.
pub fn fully_signed(mut state: Value, signer: Signer, parts: &[&str]) -> Value {
    for (i, part) in parts.iter().enumerate() {
        let mut spec = SigSpec::part(part, signer);
        if i == 0 {
            spec = spec.include("#spec").include("device.json");
        }
        sign(&mut state, &spec);
    }
    state
}

/// The state as `pvr` would never write it but a person might: indented, keys in
/// serde_json's order. The signatures must still verify (the payload is recomputed).
pub fn pretty(state: &Value) -> String {
    serde_json::to_string_pretty(state).unwrap()
}

/// The selected top-level keys, doublestar-style (`**` crosses `/`, `*` and `?` do not).
fn select(state: &Value, include: &[String], exclude: &[String]) -> Value {
    let mut out = serde_json::Map::new();
    for (k, v) in state.as_object().unwrap() {
        if include.iter().any(|g| glob(g.as_bytes(), k.as_bytes()))
            && !exclude.iter().any(|g| glob(g.as_bytes(), k.as_bytes()))
        {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

fn glob(pat: &[u8], s: &[u8]) -> bool {
    match pat {
        [] => s.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        [b'*', rest @ ..] => (0..=s.len()).any(|i| !s[..i].contains(&b'/') && glob(rest, &s[i..])),
        [b'?', rest @ ..] => !s.is_empty() && s[0] != b'/' && glob(rest, &s[1..]),
        [c, rest @ ..] => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

/// `openssl dgst -sign`; ECDSA's DER `Ecdsa-Sig-Value` becomes raw R‖S.
fn openssl_sign(key: &Path, alg: Alg, input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(["dgst", alg.digest(), "-sign", p(key)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl dgst: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match alg.scalar_len() {
        None => out.stdout,
        Some(n) => der_sig_to_raw(&out.stdout, n),
    }
}

/// DER `SEQUENCE { INTEGER r, INTEGER s }` → R‖S, each left-padded to `n` bytes.
pub fn der_sig_to_raw(der: &[u8], n: usize) -> Vec<u8> {
    let (seq, _) = der_tlv(der, 0x30);
    let (r, rest) = der_tlv(seq, 0x02);
    let (s, _) = der_tlv(rest, 0x02);
    let mut out = Vec::with_capacity(2 * n);
    for int in [r, s] {
        let int = &int[int.iter().take_while(|b| **b == 0).count()..];
        out.extend(std::iter::repeat_n(0u8, n - int.len()));
        out.extend_from_slice(int);
    }
    out
}

/// One DER element of tag `tag` at the start of `buf`: (contents, what follows).
fn der_tlv(buf: &[u8], tag: u8) -> (&[u8], &[u8]) {
    assert_eq!(buf[0], tag, "DER tag");
    let (len, hdr) = match buf[1] {
        l if l < 0x80 => (l as usize, 2),
        0x81 => (buf[2] as usize, 3),
        0x82 => (((buf[2] as usize) << 8) | buf[3] as usize, 4),
        l => panic!("DER length form {l:#x}"),
    };
    (&buf[hdr..hdr + len], &buf[hdr + len..])
}

/// The DER certificates of a PEM file, in order.
pub fn pem_ders(pem: &Path) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(pem).unwrap();
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines() {
        if line.starts_with("-----BEGIN") {
            body = Some(String::new());
        } else if line.starts_with("-----END") {
            out.push(unb64(&body.take().unwrap()));
        } else if let Some(b) = body.as_mut() {
            b.push_str(line.trim());
        }
    }
    out
}

/// The embedded JWK pvr puts in every header (`kty` and the public numbers).
fn jwk_of(pub_pem: &Path, alg: Alg) -> Value {
    let spki = pem_ders(pub_pem).remove(0);
    let (spki_body, _) = der_tlv(&spki, 0x30);
    let (_alg_id, rest) = der_tlv(spki_body, 0x30);
    let (bits, _) = der_tlv(rest, 0x03);
    let key = &bits[1..]; // unused-bits byte
    match alg.scalar_len() {
        Some(n) => json!({
            "kty": "EC",
            "crv": if n == 32 { "P-256" } else { "P-384" },
            "x": b64(&key[1..1 + n], URL),
            "y": b64(&key[1 + n..], URL),
        }),
        None => {
            let (rsa, _) = der_tlv(key, 0x30);
            let (n, rest) = der_tlv(rsa, 0x02);
            let (e, _) = der_tlv(rest, 0x02);
            let strip = |i: &[u8]| i[i.iter().take_while(|b| **b == 0).count()..].to_vec();
            json!({"kty": "RSA", "n": b64(&strip(n), URL), "e": b64(&strip(e), URL)})
        }
    }
}

const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 with `alphabet`; the standard one is padded, base64url is not (as JWS wants).
pub fn b64(data: &[u8], alphabet: &[u8; 64]) -> String {
    let pad = alphabet == STD;
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
        if pad {
            for _ in chunk.len()..3 {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 (PEM bodies) to bytes.
fn unb64(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = STD.iter().position(|a| *a == c).expect("base64 char") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
