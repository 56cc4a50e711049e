//! The files a configuration names — the private key, CA bundles, the log
//! file's folder — checked in the same pass as the values, so that `run` and
//! `check` list every problem at once instead of one round per file (issue 14).
//! Only reads and stats: nothing is created. Whether a key is a usable RSA key
//! is `crypto`'s job; here a file must exist, be readable and look like PEM.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::Path;

use super::error::{ConfigError, Origin};
use super::load::origin_at;
use super::{Selector, Settings};
use crate::platform::PlatformKind;

/// What a named file must hold.
#[derive(Clone, Copy)]
enum Holds {
    /// A PEM private key (`-----BEGIN PRIVATE KEY-----`).
    Key,
    /// One or more PEM certificates.
    Certificates,
}

impl Settings {
    /// Every named file that cannot serve: missing, closed to this user, a
    /// folder, binary (DER) instead of PEM, or holding no PEM block. Files of a
    /// disabled platform are not checked (nothing will use them).
    pub fn file_problems(&self, origins: &BTreeMap<String, Origin>) -> Vec<ConfigError> {
        let mut found = Vec::new();
        let mut check = |key: &str, entry: &str, holds: Holds| {
            if let Some(problem) = entry_problem(entry, holds) {
                let shown = (!is_inline(entry)).then(|| entry.to_string());
                let e = ConfigError::new(key, shown, origin_at(origins, key), problem);
                if !found.contains(&e) {
                    found.push(e);
                }
            }
        };
        if let Some(path) = self.manager.credentials_key_filepath.as_deref() {
            check("manager.credentials_key_filepath", path, Holds::Key);
        }
        for kind in [PlatformKind::OpenCti, PlatformKind::OpenAev] {
            let p = self.platform(kind);
            if !p.enable {
                continue;
            }
            let name = kind.as_str();
            if let Some(ca) = p.ca_file.as_deref() {
                check(&format!("{name}.ca_file"), ca, Holds::Certificates);
            }
            if p.with_proxy {
                for (i, ca) in p.https_proxy_ca.iter().enumerate() {
                    let key = format!("{name}.https_proxy_ca.{i}");
                    check(&key, ca, Holds::Certificates);
                }
            }
            if p.daemon.selector == Selector::Portainer
                && let Some(ca) = p
                    .daemon
                    .portainer
                    .as_ref()
                    .and_then(|x| x.ca_file.as_deref())
            {
                let key = format!("{name}.daemon.portainer.ca_file");
                check(&key, ca, Holds::Certificates);
            }
        }
        found.extend(self.log_file_problem(origins));
        found
    }

    /// A log file whose folder does not exist, or that exists but cannot be appended to.
    fn log_file_problem(&self, origins: &BTreeMap<String, Origin>) -> Option<ConfigError> {
        let l = &self.manager.logger;
        let path = Path::new(l.file.as_deref().filter(|f| !f.trim().is_empty())?);
        if !l.directory {
            return None;
        }
        let key = "manager.logger.file";
        let problem = match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => Some("is a folder: name a file in it".to_string()),
            Ok(_) => std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .err()
                .map(|e| format!("cannot be opened for appending: {}", io_problem(&e))),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
                match parent.map(std::fs::metadata) {
                    Some(Err(e)) => Some(format!(
                        "its folder {}: {}",
                        parent.map_or(String::new(), |p| p.display().to_string()),
                        io_problem(&e)
                    )),
                    _ => None,
                }
            }
            Err(e) => Some(io_problem(&e)),
        }?;
        let shown = Some(path.display().to_string());
        Some(ConfigError::new(
            key,
            shown,
            origin_at(origins, key),
            problem,
        ))
    }
}

/// Inline PEM (`-----BEGIN …`) rather than a path (§5.5.2).
fn is_inline(entry: &str) -> bool {
    entry.trim_start().starts_with("-----BEGIN")
}

/// Why one entry cannot serve, if it cannot.
fn entry_problem(entry: &str, holds: Holds) -> Option<String> {
    if entry.trim().is_empty() {
        return None;
    }
    if is_inline(entry) {
        return pem_problem(entry.as_bytes(), holds).map(|p| format!("inline PEM {p}"));
    }
    let path = Path::new(entry);
    if path.is_dir() {
        return Some("is a folder, not a file".into());
    }
    match std::fs::read(path) {
        Ok(bytes) => pem_problem(&bytes, holds),
        Err(e) => Some(io_problem(&e)),
    }
}

/// An I/O failure as an operator reads it: "no such file" and "permission
/// denied" are different fixes.
fn io_problem(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::NotFound => "no such file".into(),
        ErrorKind::PermissionDenied => {
            let uid = super::files::running_uid().map_or(String::new(), |uid| {
                format!(" (this process runs as uid {uid})")
            });
            format!("permission denied: this user cannot read it{uid}")
        }
        _ => format!("cannot be read: {e}"),
    }
}

/// Why `bytes` are not the PEM this entry needs, if they are not.
fn pem_problem(bytes: &[u8], holds: Holds) -> Option<String> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        // DER starts with a SEQUENCE tag (0x30).
        let der = bytes.first() == Some(&0x30);
        return Some(match (der, holds) {
            (true, Holds::Key) => "holds a binary (DER) key; the composer reads PEM: convert it \
                 with `openssl pkey -inform DER -in KEY -out key.pem`"
                .into(),
            (true, Holds::Certificates) => "holds a binary (DER) certificate; the composer \
                 reads PEM: convert it with `openssl x509 -inform DER -in CERT -out ca.pem`"
                .into(),
            (false, _) => "is binary, not a PEM text file".into(),
        });
    };
    match holds {
        Holds::Key if !text.contains("-----BEGIN") => {
            Some("holds no PEM block (expected -----BEGIN PRIVATE KEY-----)".into())
        }
        Holds::Certificates if !text.contains("-----BEGIN CERTIFICATE-----") => {
            Some("holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)".into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::files::test_support::Scratch;
    use crate::config::{PortainerSettings, Settings};

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn keys(s: &Settings) -> Vec<String> {
        s.file_problems(&BTreeMap::new())
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn every_named_file_is_reported_in_one_list() {
        let dir = Scratch::new("named-files");
        let der = dir.0.join("key.der");
        std::fs::write(&der, [0x30, 0x82, 0x04, 0xff, 0x02]).unwrap();
        let mut s = Settings::default();
        s.manager.credentials_key_filepath = Some(der.display().to_string());
        s.opencti.ca_file = Some("/nonexistent/ca.pem".into());
        s.opencti.daemon.selector = Selector::Portainer;
        s.opencti.daemon.portainer = Some(PortainerSettings {
            ca_file: Some(dir.0.display().to_string()),
            ..PortainerSettings::default()
        });
        let got = keys(&s);
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(got[0].starts_with("manager.credentials_key_filepath") && got[0].contains("DER"));
        assert!(got[1].starts_with("opencti.ca_file") && got[1].ends_with("no such file"));
        assert!(
            got[2].starts_with("opencti.daemon.portainer.ca_file") && got[2].contains("folder")
        );
    }

    #[test]
    fn good_files_and_inline_pem_pass() {
        let dir = Scratch::new("named-files-ok");
        let ca = dir.0.join("ca.pem");
        std::fs::write(&ca, CERT).unwrap();
        let mut s = Settings::default();
        s.opencti.ca_file = Some(ca.display().to_string());
        s.opencti.with_proxy = true;
        s.opencti.https_proxy_ca = vec![CERT.into()];
        assert_eq!(keys(&s), Vec::<String>::new());
        s.opencti.https_proxy_ca = vec!["-----BEGIN PRIVATE KEY-----\nx\n".into()];
        let got = keys(&s);
        assert_eq!(got.len(), 1, "{got:?}");
        // Inline PEM is not echoed as a value.
        assert!(
            got[0].starts_with("opencti.https_proxy_ca.0 (from"),
            "{got:?}"
        );
    }

    #[test]
    fn proxy_cas_are_checked_only_with_the_proxy_and_disabled_platforms_not_at_all() {
        let mut s = Settings::default();
        s.opencti.https_proxy_ca = vec!["/nonexistent/p.pem".into()];
        s.openaev.ca_file = Some("/nonexistent/a.pem".into());
        assert_eq!(keys(&s), Vec::<String>::new());
        s.opencti.with_proxy = true;
        assert_eq!(keys(&s).len(), 1);
    }

    #[test]
    fn a_log_file_in_a_missing_folder_is_named() {
        let mut s = Settings::default();
        s.manager.logger.file = Some("/nonexistent/dir/composer.log".into());
        let got = keys(&s);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].contains("its folder /nonexistent/dir: no such file"),
            "{got:?}"
        );
        s.manager.logger.directory = false;
        assert_eq!(keys(&s), Vec::<String>::new());
    }
}
