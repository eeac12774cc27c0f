//! Which program a request runs: the one COMMAND, or with `--dir` the file its path names
//! (websocketd's resolution: the first path segment that is a file is the script, the
//! rest is PATH_INFO; nothing outside the directory, symbolic links included).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// What the daemon serves.
#[derive(Debug, Clone)]
pub enum Target {
    /// One program (found on PATH at start-up) with its arguments, for every path.
    Command {
        /// The program's path.
        program: PathBuf,
        /// Its arguments.
        args: Vec<OsString>,
    },
    /// Every executable in a directory, each at its own path.
    Dir(PathBuf),
}

/// A request's program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The program to run.
    pub program: PathBuf,
    /// `SCRIPT_NAME`.
    pub script_name: String,
    /// `PATH_INFO`.
    pub path_info: String,
}

impl Target {
    /// The program for the URL path `path`, or `None` (404).
    pub fn resolve(&self, path: &str) -> Option<Script> {
        match self {
            Target::Command { program, .. } => Some(Script {
                program: program.clone(),
                script_name: "/".to_owned(),
                path_info: path.to_owned(),
            }),
            Target::Dir(dir) => resolve_in(dir, path),
        }
    }

    /// The arguments the program gets.
    pub fn args(&self) -> &[OsString] {
        match self {
            Target::Command { args, .. } => args,
            Target::Dir(_) => &[],
        }
    }
}

fn resolve_in(dir: &Path, path: &str) -> Option<Script> {
    let parts: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    let mut script_name = String::new();
    let mut file = dir.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() || *part == "." || *part == ".." || part.contains('\0') {
            return None;
        }
        script_name.push('/');
        script_name.push_str(part);
        file.push(part);
        let meta = std::fs::metadata(&file).ok()?;
        let last = i + 1 == parts.len();
        if meta.is_dir() {
            if last {
                return None;
            }
            continue;
        }
        if !inside(&file, dir) {
            return None;
        }
        let path_info = if last {
            String::new()
        } else {
            format!("/{}", parts[i + 1..].join("/"))
        };
        return Some(Script {
            program: file,
            script_name,
            path_info,
        });
    }
    None
}

/// Whether `path`, its symbolic links followed, is inside `dir`.
pub fn inside(path: &Path, dir: &Path) -> bool {
    match (std::fs::canonicalize(path), std::fs::canonicalize(dir)) {
        (Ok(p), Ok(d)) => p.starts_with(&d),
        _ => false,
    }
}

/// Finds `name` as a shell would: a path if it has a slash, else on `PATH`.
pub fn find_program(name: &OsString) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let candidate = PathBuf::from(name);
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if candidate.components().count() > 1 || name.to_string_lossy().contains('/') {
        return executable(&candidate).then_some(candidate);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(&candidate))
        .find(|p| executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_resolution() {
        let root = std::env::temp_dir().join(format!("websockd-script-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/echo.sh"), "#!/bin/sh\ncat\n").unwrap();
        std::fs::write(root.join("top"), "").unwrap();
        let outside = std::env::temp_dir().join(format!("websockd-outside-{}", std::process::id()));
        std::fs::write(&outside, "").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        let t = Target::Dir(root.clone());
        let s = t.resolve("/sub/echo.sh/extra/x").unwrap();
        assert_eq!(s.script_name, "/sub/echo.sh");
        assert_eq!(s.path_info, "/extra/x");
        assert_eq!(s.program, root.join("sub/echo.sh"));
        assert_eq!(t.resolve("/top").unwrap().path_info, "");
        assert!(t.resolve("/sub").is_none());
        assert!(t.resolve("/missing").is_none());
        assert!(t.resolve("/../etc/passwd").is_none());
        assert!(
            t.resolve("/link").is_none(),
            "a link out of the directory is refused"
        );
        let _ = std::fs::remove_dir_all(&root);
        let _ = std::fs::remove_file(&outside);
    }

    #[test]
    fn programs_are_found_on_path() {
        assert!(find_program(&"sh".into()).is_some());
        assert!(find_program(&"/bin/sh".into()).is_some());
        assert!(find_program(&"no-such-program-here".into()).is_none());
    }
}
