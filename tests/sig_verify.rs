//! `tern sig verify` against states signed by the fixtures of `tests/common/sig.rs`.

mod common;

use common::sig::{self, Alg, SigSpec, Signer};
use std::process::Command;

/// The fixture chains are what openssl itself accepts: each leaf verifies to its root through
/// its sub-CA for code signing, the expired one does not, the untrusted one not to our roots.
#[test]
fn fixture_chains_verify_with_openssl() {
    let pki = sig::pki();
    let verify = |root: &std::path::Path, signer: Signer| {
        let files = pki.leaf(signer);
        Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(root)
            .arg("-untrusted")
            .arg(&files.chain)
            .args(["-purpose", "any"])
            .arg(&files.cert)
            .output()
            .unwrap()
            .status
            .success()
    };
    for alg in Alg::ALL {
        assert!(verify(&pki.root(alg), Signer::Leaf(alg)), "{alg:?}");
    }
    assert!(!verify(&pki.root(Alg::Es256), Signer::Expired));
    assert!(!verify(&pki.root(Alg::Es256), Signer::Untrusted));
    assert!(verify(&pki.untrusted_root(), Signer::Untrusted));
    let mut state = sig::sample_state();
    for alg in Alg::ALL {
        let key = sig::sign(&mut state, &SigSpec::part("app", Signer::Leaf(alg)));
        assert_eq!(key, "_sigs/app.json");
    }
    println!("{}", sig::pretty(&state));
}
