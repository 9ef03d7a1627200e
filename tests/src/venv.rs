//! Virtualenvs of pinned PyPI packages under a test binary's `CARGO_TARGET_TMPDIR`: Stripe's
//! SDK (`tests/stripe`) and moto's S3 server (`tests/s3`). Python 3 with `venv` must be installed
//! (`.ci/run` installs it on a fresh machine); the packages come from PyPI on first use.

use std::path::{Path, PathBuf};

/// The `python` of virtualenv `name` under `target_tmp`, holding `requirements`' pins. It is
/// installed when missing or holding other pins. Test binaries run concurrently: the first
/// takes an exclusive lock and installs, the others wait for it and find the install done.
pub fn python(target_tmp: &Path, name: &str, requirements: &Path) -> PathBuf {
    let wanted = std::fs::read_to_string(requirements)
        .unwrap_or_else(|e| panic!("{}: {e}", requirements.display()));
    let venv = target_tmp.join(name);
    let python = venv.join("bin").join("python");
    let stamp = venv.join(".requirements");
    let current = || std::fs::read_to_string(&stamp).ok();
    if current().as_deref() != Some(wanted.as_str()) {
        std::fs::create_dir_all(target_tmp).expect("target tmp dir");
        let lock =
            std::fs::File::create(target_tmp.join(format!("{name}.lock"))).expect("venv lock file");
        lock.lock().expect("locking the venv");
        if current().as_deref() != Some(wanted.as_str()) {
            let _ = std::fs::remove_dir_all(&venv);
            run(
                std::process::Command::new("python3")
                    .args(["-m", "venv"])
                    .arg(&venv),
                "python3 -m venv (install python3 and python3-venv)",
            );
            run(
                std::process::Command::new(&python)
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                        "-r",
                    ])
                    .arg(requirements),
                &format!("pip install -r {}", requirements.display()),
            );
            std::fs::write(&stamp, &wanted).expect("writing the venv's stamp");
        }
    }
    python
}

fn run(command: &mut std::process::Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
