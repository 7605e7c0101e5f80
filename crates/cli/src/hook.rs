//! `keyward hook install|uninstall`: a git pre-commit hook that scans the index.

use anyhow::{bail, Context};
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Marks hooks this tool wrote, so it never overwrites or removes anyone else's.
const MARKER: &str = "# installed by `keyward hook install`";

#[derive(Subcommand)]
pub enum HookAction {
    /// Install a pre-commit hook that runs `keyward scan --staged` (and, when it
    /// blocks a commit, says what to do next).
    Install {
        /// Repository (default: the current directory).
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Replace an existing pre-commit hook that keyward did not write; the old
        /// one is kept as `pre-commit.keyward-backup`.
        #[arg(long)]
        force: bool,
    },
    /// Remove the pre-commit hook installed by keyward.
    Uninstall {
        #[arg(long, default_value = ".")]
        repo: PathBuf,
    },
}

/// Where git looks for hooks in `repo` (honours `core.hooksPath` and worktrees).
fn hooks_dir(repo: &Path) -> anyhow::Result<PathBuf> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "--path-format=absolute", "--git-path", "hooks"])
        .output()
        .context("cannot run git; install git or put it on PATH")?;
    if !out.status.success() {
        bail!(
            "{} is not a git repository: {}",
            repo.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn script() -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("cannot tell where the keyward binary is")?;
    let exe = exe.to_string_lossy().replace('\'', r"'\''");
    Ok(format!(
        "#!/bin/sh\n{MARKER}\n# Blocks commits that add secrets.\n\
         keyward='{exe}'\n\
         [ -x \"$keyward\" ] || keyward=keyward\n\
         \"$keyward\" scan --staged --no-progress\n\
         status=$?\n\
         if [ \"$status\" = 1 ]; then\n\
         \x20 cat >&2 <<'EOF'\n\
         {BLOCKED}\
         EOF\n\
         fi\n\
         exit \"$status\"\n"
    ))
}

/// What a blocked commit prints after the findings.
const BLOCKED: &str = "\
commit blocked by keyward: the staged changes above add secrets.
  - a real secret: remove it from the files (and revoke or rotate it at its
    provider if it was ever pushed or shared), `git add` again, commit again;
  - not a secret (a test value, an example): add `keyward:allow` in a comment on
    its line, or record it with `keyward scan --write-baseline .keyward-baseline.json`;
  - to commit anyway this once: `git commit --no-verify`.
";

/// Where a replaced hook is kept: `pre-commit.keyward-backup`, or with a number
/// when that exists already, so that no earlier backup is overwritten.
fn backup_path(hook: &Path) -> PathBuf {
    let first = hook.with_file_name("pre-commit.keyward-backup");
    if !first.exists() {
        return first;
    }
    (1..)
        .map(|n| hook.with_file_name(format!("pre-commit.keyward-backup.{n}")))
        .find(|p| !p.exists())
        .expect("some number is free")
}

pub fn run(action: HookAction) -> anyhow::Result<ExitCode> {
    match action {
        HookAction::Install { repo, force } => {
            let dir = hooks_dir(&repo)?;
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let hook = dir.join("pre-commit");
            if let Ok(existing) = std::fs::read_to_string(&hook) {
                if !existing.contains(MARKER) {
                    if !force {
                        bail!(
                            "{} already exists and was not written by keyward; add `keyward scan --staged` to it, or pass --force to replace it (it is kept as a backup)",
                            hook.display()
                        );
                    }
                    let backup = backup_path(&hook);
                    std::fs::rename(&hook, &backup).with_context(|| {
                        format!("cannot move {} to {}", hook.display(), backup.display())
                    })?;
                    println!("kept the previous hook as {}", backup.display());
                }
            }
            std::fs::write(&hook, script()?)
                .with_context(|| format!("cannot write {}", hook.display()))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;
            }
            println!("installed pre-commit hook at {}", hook.display());
        }
        HookAction::Uninstall { repo } => {
            let hook = hooks_dir(&repo)?.join("pre-commit");
            match std::fs::read_to_string(&hook) {
                Ok(s) if s.contains(MARKER) => {
                    std::fs::remove_file(&hook)?;
                    println!("removed {}", hook.display());
                }
                Ok(_) => bail!(
                    "{} was not written by keyward; leaving it alone",
                    hook.display()
                ),
                Err(_) => println!("no pre-commit hook installed"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
