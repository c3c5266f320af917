//! The catalogue and `explain`.

use super::*;

#[test]
fn catalogue_is_complete_and_unique() {
    let ids: Vec<&str> = catalog().iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 32);
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len());
    for rule in catalog() {
        assert!(!rule.sources.is_empty(), "{}", rule.id);
        assert!(!rule.title.is_empty() && !rule.checks.is_empty() && !rule.diagnosis.is_empty());
        let c = &rule.change;
        assert!(
            c.libvirt.is_some() || c.qemu.is_some() || c.host.is_some(),
            "{}",
            rule.id
        );
    }
    for entry in OUT_OF_REACH {
        assert!(rule(entry.rule).is_some(), "{}", entry.rule);
    }
}

#[test]
fn explain_renders_a_manual_page() {
    let text = explain("c1", &Thresholds::default()).unwrap();
    assert!(
        text.starts_with("C1: vCPU threads wait for a host CPU"),
        "{text}"
    );
    for heading in [
        "\nCHECKS\n",
        "\nWHY\n",
        "\nRECOMMENDATION\n",
        "\nEXPECTED EFFECT\n",
        "\nTHRESHOLDS\n",
        "\nHYSTERESIS\n",
        "\nSOURCES\n",
    ] {
        assert!(text.contains(heading), "{heading} missing:\n{text}");
    }
    assert!(
        text.contains("c1_wait_warn = 0.05 (default) [J] [share]"),
        "{text}"
    );
    assert!(text.contains("c1_wait_critical = 0.2 (default)"), "{text}");
    assert!(text.contains("record_steal_time"));
    for line in text.lines() {
        assert!(line.chars().count() <= 78, "too wide: {line:?}");
    }

    let configured = Thresholds {
        c1_wait_warn: 0.1,
        ..Thresholds::default()
    };
    let text = explain("C1", &configured).unwrap();
    assert!(
        text.contains("c1_wait_warn = 0.1 (configured; default 0.05)"),
        "{text}"
    );

    let text = explain("I1", &Thresholds::default()).unwrap();
    assert!(text.contains("None: the rule checks configuration facts"));
    assert!(explain("X9", &Thresholds::default()).is_none());
    for rule in catalog() {
        assert!(explain(rule.id, &Thresholds::default()).is_some());
    }
}
