//! Config diagnostics: an error or warning with the file, line and column it is about, and a hint.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about the config file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
    #[serde(skip)]
    pub source_line: Option<String>,
    #[serde(skip)]
    pub width: usize,
}

impl Diagnostic {
    /// Builds a diagnostic at a byte span of `src`.
    pub fn at(
        severity: Severity,
        file: &Path,
        src: &str,
        span: Option<Range<usize>>,
        message: String,
        hint: Option<String>,
    ) -> Self {
        let span = span.unwrap_or(0..0);
        let start = span.start.min(src.len());
        let (line, column, line_text) = line_col(src, start);
        let width = src[start..span.end.clamp(start, src.len())]
            .lines()
            .next()
            .map(|l| l.chars().count())
            .unwrap_or(0)
            .max(1);
        Diagnostic {
            severity,
            file: file.to_path_buf(),
            line,
            column,
            message,
            hint,
            source_line: Some(line_text.to_string()),
            width,
        }
    }
}

/// 1-based line and column (characters) of a byte offset, and the text of that line.
pub fn line_col(src: &str, offset: usize) -> (usize, usize, &str) {
    let offset = offset.min(src.len());
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line_end = src[line_start..]
        .find('\n')
        .map(|i| line_start + i)
        .unwrap_or(src.len());
    let column = src[line_start..offset].chars().count() + 1;
    (line, column, src[line_start..line_end].trim_end_matches('\r'))
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        writeln!(f, "{label}: {}", self.message)?;
        let gutter = self.line.to_string().len();
        writeln!(
            f,
            "{:gutter$}--> {}:{}:{}",
            "",
            self.file.display(),
            self.line,
            self.column
        )?;
        if let Some(text) = &self.source_line {
            writeln!(f, "{:gutter$} |", "")?;
            writeln!(f, "{} | {}", self.line, text)?;
            writeln!(
                f,
                "{:gutter$} | {}{}",
                "",
                " ".repeat(self.column.saturating_sub(1)),
                "^".repeat(self.width)
            )?;
        }
        if let Some(h) = &self.hint {
            writeln!(f, "{:gutter$} = hint: {h}", "")?;
        }
        Ok(())
    }
}

/// The config stage failed: every error found, in file order, and the warnings.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub diagnostics: Vec<Diagnostic>,
}

impl ConfigError {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Error)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.diagnostics {
            writeln!(f, "{d}")?;
        }
        let n = self.errors().count();
        write!(f, "the configuration has {n} error{}", if n == 1 { "" } else { "s" })
    }
}
