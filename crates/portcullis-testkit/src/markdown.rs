//! Fenced code blocks of the documentation pages, for tests that check what the docs show.

/// A fenced code block of a markdown page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The line of its opening fence (1-based).
    pub line: usize,
    /// Its text, each line ending in `\n`.
    pub text: String,
    /// The HTML comment on the line right above the fence, without `<!--` and `-->`, trimmed.
    pub marker: Option<String>,
}

/// The fenced blocks of `markdown` whose info string starts with one of `languages` (e.g. `["yaml", "yml"]`).
///
/// ```
/// let page = "Text\n\n<!-- file: a.yaml -->\n```yaml\nkey: value\n```\n";
/// let blocks = portcullis_testkit::markdown::fenced_blocks(page, &["yaml"]);
/// assert_eq!(blocks[0].line, 4);
/// assert_eq!(blocks[0].text, "key: value\n");
/// assert_eq!(blocks[0].marker.as_deref(), Some("file: a.yaml"));
/// ```
pub fn fenced_blocks(markdown: &str, languages: &[&str]) -> Vec<Block> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let fence = lines[i].trim_start();
        if let Some(info) = fence.strip_prefix("```")
            && languages.iter().any(|language| info.starts_with(language))
        {
            let marker = (i > 0)
                .then(|| lines[i - 1].trim())
                .and_then(|above| above.strip_prefix("<!--"))
                .map(|rest| rest.trim_end_matches("-->").trim().to_owned());
            let end = (i + 1..lines.len()).find(|&j| lines[j].trim_start().starts_with("```")).unwrap_or(lines.len());
            let text = lines[i + 1..end].iter().map(|line| format!("{line}\n")).collect();
            found.push(Block { line: i + 1, text, marker });
            i = end;
        }
        i += 1;
    }
    found
}
