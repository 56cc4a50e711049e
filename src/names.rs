//! Workload names from connector names (CONTRACT §5.1). Keeps the existing
//! composer's result for every name it already made valid (so its workloads are
//! found), and makes the rest valid for Docker and Kubernetes (D15).

/// Kubernetes object names (DNS-1123 labels) stop at 63 characters.
pub const MAX_NAME: usize = 63;

/// The workload name of a connector: optional prefix + name; every character
/// that is not an ASCII letter or digit becomes `-` (one for one, as the
/// existing composer does), lowercased, `-` trimmed at both ends, at most 63
/// characters. `None` when nothing is left (a name of only symbols).
pub fn workload_name(prefix: Option<&str>, connector_name: &str) -> Option<String> {
    let full = format!("{}{}", prefix.unwrap_or(""), connector_name);
    let mapped: String = full
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches('-');
    let cut = &trimmed[..trimmed.len().min(MAX_NAME)];
    let name = cut.trim_end_matches('-');
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The existing composer's rule, for comparison: Unicode alphanumerics kept,
    /// everything else `-`, lowercased.
    fn existing_rule(name: &str) -> String {
        name.chars()
            .map(|c| if c.is_alphanumeric() { c } else { '-' })
            .collect::<String>()
            .to_lowercase()
    }

    #[test]
    fn names_the_existing_composer_made_valid_are_unchanged() {
        for n in [
            "AlienVault OTX",
            "MITRE ATT&CK",
            "abuse.ch URLhaus",
            "CVE",
            "ipinfo-2",
            "X_Force 1",
        ] {
            let ours = workload_name(None, n).unwrap();
            let theirs = existing_rule(n);
            if !theirs.starts_with('-') && !theirs.ends_with('-') && theirs.len() <= 63 {
                assert_eq!(ours, theirs, "{n}");
            }
        }
        assert_eq!(
            workload_name(None, "AlienVault OTX").unwrap(),
            "alienvault-otx"
        );
        assert_eq!(workload_name(None, "MITRE ATT&CK").unwrap(), "mitre-att-ck");
    }

    #[test]
    fn d15_non_ascii_is_replaced_and_ends_are_trimmed() {
        assert_eq!(
            workload_name(None, "Café  Connector!").unwrap(),
            "caf---connector"
        );
        assert_eq!(workload_name(None, "--[Feed]--").unwrap(), "feed");
        assert_eq!(workload_name(None, "!!!"), None);
        assert_eq!(workload_name(None, "日本"), None);
    }

    #[test]
    fn d15_names_are_cut_to_63_without_a_trailing_dash() {
        let long = format!("{}-{}", "a".repeat(62), "b".repeat(10));
        let n = workload_name(None, &long).unwrap();
        assert_eq!(n, "a".repeat(62));
        let n = workload_name(None, &"x".repeat(100)).unwrap();
        assert_eq!(n.len(), 63);
    }

    #[test]
    fn prefix_is_optional_and_sanitised_with_the_name() {
        assert_eq!(workload_name(Some("Acme_"), "OTX").unwrap(), "acme-otx");
        assert_eq!(workload_name(Some(""), "OTX").unwrap(), "otx");
    }
}
