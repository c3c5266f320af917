//! Presenters that are not interactive: JSON, text, and the Prometheus endpoint.
pub mod json;
pub mod metrics;
pub mod serve;
pub mod text;

/// The fixture snapshot as each presenter renders it, kept as insta snapshots: any change to
/// what users or scrapers see shows up here as a reviewed diff.
#[cfg(test)]
mod golden {
    use crate::model::fixture;

    fn rendered(write: impl Fn(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        write(&mut out);
        String::from_utf8(out).expect("presenters write UTF-8")
    }

    #[test]
    fn the_fixture_as_json() {
        let text = rendered(|out| super::json::write(out, &fixture::snapshot()).unwrap());
        insta::assert_snapshot!(text);
    }

    #[test]
    fn the_fixture_as_text() {
        let text = rendered(|out| super::text::write(out, &fixture::snapshot()).unwrap());
        insta::assert_snapshot!(text);
    }

    #[test]
    fn the_fixture_as_metrics() {
        insta::assert_snapshot!(super::metrics::render(&fixture::snapshot()).unwrap());
    }
}
