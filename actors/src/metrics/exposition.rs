//! Text exposition formats: which one a scraper asked for (its `Accept` header), and the
//! Prometheus 0.0.4 text made from the OpenMetrics text prometheus-client encodes.

/// A text format the metrics endpoints answer in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextFormat {
    /// OpenMetrics 1.0.0, as prometheus-client encodes it.
    OpenMetrics,
    /// The Prometheus text format 0.0.4, what `promtool check metrics` and older scrapers read.
    Prometheus,
}

/// Content type of the Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const OPENMETRICS_MEDIA_TYPE: &str = "application/openmetrics-text";

impl TextFormat {
    /// OpenMetrics when `Accept` names `application/openmetrics-text` with a weight above zero
    /// and at least that of an explicit `text/plain`; otherwise (no header, `*/*`, `text/plain`)
    /// the Prometheus text, which every scraper reads.
    pub fn negotiate(accept: Option<&str>) -> TextFormat {
        let (mut openmetrics, mut plain) = (0.0_f32, 0.0_f32);
        for range in accept.unwrap_or_default().split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if media.eq_ignore_ascii_case(OPENMETRICS_MEDIA_TYPE) {
                openmetrics = openmetrics.max(q);
            } else if media.eq_ignore_ascii_case("text/plain") {
                plain = plain.max(q);
            }
        }
        if openmetrics > 0.0 && openmetrics >= plain {
            TextFormat::OpenMetrics
        } else {
            TextFormat::Prometheus
        }
    }

    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            TextFormat::OpenMetrics => super::CONTENT_TYPE,
            TextFormat::Prometheus => PROMETHEUS_CONTENT_TYPE,
        }
    }

    /// The exposition in this format, from prometheus-client's OpenMetrics text.
    pub fn encode(self, openmetrics: String) -> String {
        match self {
            TextFormat::OpenMetrics => openmetrics,
            TextFormat::Prometheus => to_prometheus(&openmetrics),
        }
    }
}

// === OpenMetrics -> Prometheus 0.0.4 ===

/// Rewrites OpenMetrics text as Prometheus 0.0.4 text. The differences that matter to 0.0.4
/// parsers: a counter family is named after its `_total` series (else the samples are read as
/// an untyped family of their own, and the declared one as empty); `# UNIT` and `# EOF` are
/// unknown there; `_created` series and exemplars have no place; `unknown` is `untyped`.
fn to_prometheus(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // HELP comes before TYPE, and only TYPE says whether the family is renamed.
    let mut help: Option<(&str, &str)> = None;
    let mut counter: Option<&str> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            flush_help(&mut out, help.take(), None);
            help = rest.split_once(' ').or(Some((rest, "")));
            counter = None;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            counter = (kind == "counter").then_some(name);
            let renamed = counter.map(|n| format!("{n}_total"));
            let family = renamed.as_deref().unwrap_or(name);
            flush_help(&mut out, help.take(), renamed.as_deref());
            let kind = match kind {
                "unknown" => "untyped",
                k => k,
            };
            push_line(&mut out, &format!("# TYPE {family} {kind}"));
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        } else if line.starts_with('#') {
            push_line(&mut out, line);
        } else if counter.is_some_and(|n| is_series(line, n, "_created")) {
            continue;
        } else {
            push_line(&mut out, strip_exemplar(line));
        }
    }
    flush_help(&mut out, help, None);
    out
}

fn flush_help(out: &mut String, help: Option<(&str, &str)>, renamed: Option<&str>) {
    if let Some((name, text)) = help {
        push_line(
            out,
            &format!(
                "# HELP {} {}",
                renamed.unwrap_or(name),
                unescape_quotes(text)
            ),
        );
    }
}

fn push_line(out: &mut String, line: &str) {
    out.push_str(line);
    out.push('\n');
}

/// OpenMetrics escapes `"` in HELP text; 0.0.4 escapes only `\` and newlines there.
fn unescape_quotes(help: &str) -> std::borrow::Cow<'_, str> {
    if help.contains("\\\"") {
        help.replace("\\\"", "\"").into()
    } else {
        help.into()
    }
}

/// Whether a sample line belongs to the series `family` + `suffix`.
fn is_series(line: &str, family: &str, suffix: &str) -> bool {
    line.strip_prefix(family)
        .and_then(|r| r.strip_prefix(suffix))
        .is_some_and(|r| r.starts_with(['{', ' ']))
}

/// Drops an exemplar (` # {labels} value [timestamp]`) from a sample line. A label value may
/// hold " # ", so the search starts after the closing brace of the label set.
fn strip_exemplar(line: &str) -> &str {
    let labels_end = match line.find('{') {
        Some(open) if line[..open].find(' ').is_none() => closing_brace(line, open),
        _ => Some(0),
    };
    match labels_end.and_then(|end| line[end..].find(" # ").map(|i| end + i)) {
        Some(i) => &line[..i],
        None => line,
    }
}

/// The index just past the `}` that closes the label set opened at `open`, skipping quoted
/// values with their escapes.
fn closing_brace(line: &str, open: usize) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in line[open..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(open + i + 1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests;
