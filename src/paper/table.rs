//! A result table of the paper harness: Markdown for BENCHMARKS.md, CSV and JSON (one record per row) for
//! machines. Cells are text as printed; a cell that does not apply holds "–", never nothing.

use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// What a cell holds when the column does not apply to the row (e.g. no published figure).
pub const NOT_APPLICABLE: &str = "–";

/// One table: a file stem, a title, column names and rows of cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// File stem of its CSV and JSON (`table4`, `fig3_error`, …).
    pub name: String,
    /// Title printed above it.
    pub title: String,
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, each with one cell per column.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table.
    pub fn new(name: &str, title: &str, columns: &[&str]) -> Table {
        Table {
            name: name.into(),
            title: title.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; a row of the wrong width is padded with [`NOT_APPLICABLE`] or cut (a bug of the caller that
    /// must not lose the rest of a long run), and an empty cell becomes [`NOT_APPLICABLE`].
    pub fn push(&mut self, row: Vec<String>) {
        let mut row: Vec<String> =
            row.into_iter().map(|c| if c.trim().is_empty() { NOT_APPLICABLE.to_string() } else { c }).collect();
        debug_assert_eq!(row.len(), self.columns.len(), "table {}: row width", self.name);
        row.resize(self.columns.len(), NOT_APPLICABLE.into());
        self.rows.push(row);
    }

    /// The table in Markdown (header, separator, rows).
    pub fn markdown(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut s = line(&self.columns);
        s.push_str(&format!("|{}\n", "---|".repeat(self.columns.len())));
        for r in &self.rows {
            s.push_str(&line(r));
        }
        s
    }

    /// The table as CSV (RFC 4180 quoting).
    pub fn csv(&self) -> String {
        let field = |c: &String| {
            if c.contains([',', '"', '\n']) {
                format!("\"{}\"", c.replace('"', "\"\""))
            } else {
                c.clone()
            }
        };
        let line = |cells: &[String]| cells.iter().map(field).collect::<Vec<_>>().join(",") + "\n";
        let mut s = line(&self.columns);
        for r in &self.rows {
            s.push_str(&line(r));
        }
        s
    }

    /// One JSON object per row, column name → value (a number where the cell parses as one, else the text).
    pub fn records(&self) -> Vec<Value> {
        self.rows
            .iter()
            .map(|r| {
                let mut m = Map::new();
                m.insert("table".into(), Value::String(self.name.clone()));
                for (c, v) in self.columns.iter().zip(r) {
                    let value = match v.parse::<f64>() {
                        Ok(x) if x.is_finite() => {
                            serde_json::Number::from_f64(x).map_or(Value::String(v.clone()), Value::Number)
                        }
                        _ => Value::String(v.clone()),
                    };
                    m.insert(c.clone(), value);
                }
                Value::Object(m)
            })
            .collect()
    }

    /// Writes `<dir>/<name>.csv` and `<dir>/<name>.json`; returns their paths.
    pub fn write(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        let csv = dir.join(format!("{}.csv", self.name));
        std::fs::write(&csv, self.csv())?;
        let json = dir.join(format!("{}.json", self.name));
        let text = serde_json::to_string_pretty(&self.records()).map_err(std::io::Error::other)?;
        std::fs::write(&json, text + "\n")?;
        Ok(vec![csv, json])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_csv_and_records_agree() {
        let mut t = Table::new("t", "T", &["model", "MB"]);
        t.push(vec!["LeNet, b1".into(), "2.74".into()]);
        t.push(vec!["AlexNet".into(), String::new()]);
        assert_eq!(t.markdown(), "| model | MB |\n|---|---|\n| LeNet, b1 | 2.74 |\n| AlexNet | – |\n");
        assert_eq!(t.csv(), "model,MB\n\"LeNet, b1\",2.74\nAlexNet,–\n");
        let r = t.records();
        assert_eq!(r[0]["MB"], serde_json::json!(2.74));
        assert_eq!(r[1]["MB"], serde_json::json!("–"));
    }
}
