//! Block-style YAML, as `kubectl get -o yaml` and other tools write dumps, read directly: several times faster than
//! the general parser, which spends most of a large dump's loading time on events this subset does not need.
//!
//! The subset: block mappings and sequences (compact ones inside sequence items included), plain, single- and
//! double-quoted scalars over one or more lines, literal block scalars, empty flow collections (`{}`, `[]`) and
//! comments. A document holding anything else (anchors, aliases, tags, flow collections with content, folded block
//! scalars, complex or number-like keys, tabs outside scalars, directives, control characters, …) makes the reader
//! give up on it, and the general parser reads it. What the reader reads, it reads as the general parser does: a plain
//! scalar that may be something other than a string is resolved by the general parser itself, and the tests and the
//! `yaml` fuzz target compare the two readings.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// Why the reader gave up on a document, and on which of its lines (1-based).
#[derive(Debug, PartialEq)]
pub struct GaveUp {
    pub line: usize,
    pub reason: &'static str,
}

type Read<T> = Result<T, GaveUp>;

/// Plain scalars that YAML may read as something other than a string (`0`, `true`, `1.10`, `~`), each resolved by the
/// general parser once and remembered: dumps repeat a few of them many times.
#[derive(Default)]
pub struct Scalars(HashMap<String, Value>);

impl Scalars {
    fn resolve(&mut self, text: &str) -> Option<Value> {
        if let Some(value) = self.0.get(text) {
            return Some(value.clone());
        }
        // As a mapping's value, where the reader found it: alone, `...` would end the document.
        let document = format!("k: {text}\n");
        let mut read: Value = serde_saphyr::from_str_with_options(&document, super::options(document.len())).ok()?;
        let value = read.get_mut("k")?.take();
        self.0.insert(text.to_string(), value.clone());
        Some(value)
    }
}

/// The document in `text` (one document, as [`super::split`] cuts them; `Value::Null` when it is empty), or why it is
/// outside the subset this reader reads.
pub fn read(text: &str, scalars: &mut Scalars) -> Read<Value> {
    read_with(text, scalars, None)
}

/// The same, but the items of the top-level mapping's `items` sequence (a `List`'s) are handed to `items` one by one
/// as they are read, each with its text (its lines, from the one its dash is on), and not kept: the document comes
/// back with an empty `items`. A document the reader gives up on may have handed some items over already.
pub fn read_items<'a, 's>(
    text: &'a str,
    scalars: &'s mut Scalars,
    items: &'s mut dyn FnMut(Value, &'a str),
) -> Read<Value> {
    read_with(text, scalars, Some(items))
}

fn read_with<'a, 's>(
    text: &'a str,
    scalars: &'s mut Scalars,
    items: Option<&'s mut dyn FnMut(Value, &'a str)>,
) -> Read<Value> {
    let mut reader = Reader { text, b: text.as_bytes(), pos: 0, scalars, anchors: HashMap::new(), items };
    reader.printable()?;
    let root = loop {
        let Some(indent) = reader.content_line()? else { return Ok(Value::Null) };
        let at = reader.pos + indent;
        if indent == 0 && reader.b[at] == b'%' {
            return reader.give_up("a directive");
        }
        if indent == 0 && marker(&reader.b[at..], b"---") {
            let rest = reader.skip_spaces(at + 3);
            if !reader.at_line_end(rest) {
                return reader.give_up("a document that starts on its marker's line");
            }
            reader.pos = reader.next_line(rest);
            continue;
        }
        reader.pos = at;
        break reader.block_node(indent)?;
    };
    match reader.content_line()? {
        None => Ok(root),
        Some(_) => reader.give_up("text after the document's top-level node"),
    }
}

/// Whether `line` starts with the marker `mark` (`---`, `...`) followed by a space or its end.
fn marker(line: &[u8], mark: &[u8]) -> bool {
    line.starts_with(mark) && matches!(line.get(mark.len()), None | Some(b' ' | b'\n'))
}

/// Whether a plain scalar may be read as something other than a string: empty, a null or boolean spelling, or
/// something shaped like a number. Loose on purpose (the general parser decides), but strings kubectl writes plain
/// most often (names, uids, addresses, versions) are told apart here.
fn maybe_not_string(s: &str) -> bool {
    let Some(&first) = s.as_bytes().first() else { return true };
    if !matches!(first, b'0'..=b'9' | b'+' | b'-' | b'.') {
        return s == "~"
            || ["true", "yes", "y", "on", "false", "no", "n", "off", "null"].iter().any(|w| s.eq_ignore_ascii_case(w));
    }
    let bytes = s.as_bytes();
    let mut dots = 0;
    for (i, &c) in bytes.iter().enumerate() {
        match c {
            b'.' => dots += 1,
            b'+' | b'-' if i > 0 && !matches!(bytes[i - 1], b'e' | b'E') => return false,
            b'+' | b'-' | b'_' => {}
            c if c.is_ascii_alphanumeric() => {}
            _ => return false,
        }
    }
    dots <= 1
}

struct Reader<'a, 's> {
    text: &'a str,
    b: &'a [u8],
    pos: usize,
    scalars: &'s mut Scalars,
    /// The document's anchored nodes, for its aliases.
    anchors: HashMap<String, Value>,
    /// Where the top-level `items` go, when they are not kept ([`read_items`]).
    items: Option<&'s mut dyn FnMut(Value, &'a str)>,
}

impl<'a> Reader<'a, '_> {
    fn give_up<T>(&self, reason: &'static str) -> Read<T> {
        let line = memchr::memchr_iter(b'\n', &self.b[..self.pos.min(self.b.len())]).count() + 1;
        Err(GaveUp { line, reason })
    }

    /// Gives up on text the general parser refuses or reads differently: control characters, carriage returns, byte
    /// order marks, and the characters YAML 1.1 took for line breaks.
    fn printable(&mut self) -> Read<()> {
        let b = self.b;
        for (i, &c) in b.iter().enumerate() {
            let bad = match c {
                b'\t' | b'\n' => false,
                0..=0x1f | 0x7f => true,
                0xc2 => matches!(b.get(i + 1), Some(0x80..=0x9f)),
                0xe2 => b.get(i + 1) == Some(&0x80) && matches!(b.get(i + 2), Some(0xa8 | 0xa9)),
                0xef => {
                    matches!((b.get(i + 1), b.get(i + 2)), (Some(0xbb), Some(0xbf)) | (Some(0xbf), Some(0xbe | 0xbf)))
                }
                _ => false,
            };
            if bad {
                self.pos = i;
                return self.give_up("a control character, a byte order mark or a line separator");
            }
        }
        Ok(())
    }

    fn line_end(&self, from: usize) -> usize {
        memchr::memchr(b'\n', &self.b[from..]).map_or(self.b.len(), |i| from + i)
    }

    fn next_line(&self, from: usize) -> usize {
        (self.line_end(from) + 1).min(self.b.len())
    }

    fn skip_spaces(&self, mut at: usize) -> usize {
        while self.b.get(at) == Some(&b' ') {
            at += 1;
        }
        at
    }

    /// Whether only the line's end, or a comment after at least one space, is left at `at` (past any spaces).
    fn at_line_end(&self, at: usize) -> bool {
        match self.b.get(at) {
            None | Some(b'\n') => true,
            Some(b'#') => at > 0 && self.b[at - 1] == b' ',
            _ => false,
        }
    }

    /// From the start of a line, skips blank and comment lines; at the start of the next line with content, returns
    /// its indentation; `None` at the document's end.
    fn content_line(&mut self) -> Read<Option<usize>> {
        loop {
            let start = self.pos;
            if start >= self.b.len() {
                return Ok(None);
            }
            let at = self.skip_spaces(start);
            match self.b.get(at) {
                None => {
                    self.pos = self.b.len();
                    return Ok(None);
                }
                Some(b'\n' | b'#') => self.pos = self.next_line(at),
                Some(b'\t') => {
                    let mut end = at;
                    while matches!(self.b.get(end), Some(b' ' | b'\t')) {
                        end += 1;
                    }
                    if !matches!(self.b.get(end), None | Some(b'\n' | b'#')) {
                        self.pos = at;
                        return self.give_up("a tab in indentation");
                    }
                    self.pos = self.next_line(end);
                }
                Some(_) => {
                    if at == start && marker(&self.b[at..], b"...") {
                        if !self.at_line_end(self.skip_spaces(at + 3)) {
                            self.pos = at;
                            return self.give_up("text after a document's end marker");
                        }
                        self.pos = self.b.len();
                        return Ok(None);
                    }
                    return Ok(Some(at - start));
                }
            }
        }
    }

    fn is_sequence_entry(&self, at: usize) -> bool {
        self.b[at] == b'-' && matches!(self.b.get(at + 1), None | Some(b' ' | b'\n'))
    }

    /// A node that starts a line of its own, at column `col` (the reader at its first character).
    fn block_node(&mut self, col: usize) -> Read<Value> {
        if self.is_sequence_entry(self.pos) {
            self.sequence(col)
        } else if let Some(first) = self.key_at(self.pos)? {
            self.mapping(col, first)
        } else {
            self.give_up("a scalar on a line of its own")
        }
    }

    /// The node below a mapping entry or a sequence entry whose line ended after its indicator: the node indented
    /// deeper than `parent`, a sequence at `parent` itself when the entry is a mapping's, or null.
    fn node_below(&mut self, parent: usize, sequence_at_parent: bool) -> Read<Value> {
        match self.content_line()? {
            Some(indent) if indent > parent => {
                self.pos += indent;
                self.block_node(indent)
            }
            Some(indent) if sequence_at_parent && indent == parent && self.is_sequence_entry(self.pos + indent) => {
                self.pos += indent;
                self.sequence(indent)
            }
            _ => Ok(Value::Null),
        }
    }

    /// The key of a mapping entry starting at `at`, and where its value starts (just past the `:`), when the line
    /// holds one.
    fn key_at(&mut self, at: usize) -> Read<Option<(String, usize)>> {
        let end = self.line_end(at);
        let line = &self.b[at..end];
        if matches!(line[0], b'"' | b'\'') {
            let Some(close) = quoted_end(line) else { return Ok(None) };
            let colon = self.skip_spaces(at + close);
            if self.b.get(colon) != Some(&b':') || !matches!(self.b.get(colon + 1), None | Some(b' ' | b'\n')) {
                return Ok(None);
            }
            let saved = self.pos;
            self.pos = at;
            let key = if line[0] == b'"' { self.double_quoted(0)? } else { self.single_quoted(0)? };
            self.pos = saved;
            return Ok(Some((key, colon + 1)));
        }
        let mut from = 0;
        while let Some(found) = memchr::memchr2(b':', b'#', &line[from..]) {
            let i = from + found;
            from = i + 1;
            match line[i] {
                b':' if matches!(line.get(i + 1), None | Some(b' ')) => {
                    let key = self.text[at..at + i].trim_end_matches(' ');
                    let starts_badly = match key.as_bytes().first() {
                        None => true,
                        Some(b'?' | b':' | b'-') => key.len() == 1 || key.as_bytes()[1] == b' ',
                        Some(c) => b",[]{}#&*!|>'\"%@`".contains(c),
                    };
                    if starts_badly || key.contains('\t') || key == "<<" || maybe_not_string(key) {
                        self.pos = at;
                        return self.give_up("a key that is not a plain string");
                    }
                    return Ok(Some((key.to_string(), at + i + 1)));
                }
                b':' if line.get(i + 1) == Some(&b'\t') => {
                    self.pos = at;
                    return self.give_up("a tab after a key");
                }
                b'#' if i > 0 && matches!(line[i - 1], b' ' | b'\t') => return Ok(None),
                _ => {}
            }
        }
        Ok(None)
    }

    /// A block mapping whose keys sit at column `col`; `first` is its first key, as [`Self::key_at`] found it.
    fn mapping(&mut self, col: usize, first: (String, usize)) -> Read<Value> {
        let mut map = Map::new();
        let mut entry = Some(first);
        loop {
            let Some((key, after)) = entry.take() else {
                return self.give_up("a line in a mapping that is not one of its entries");
            };
            let (anchor, start) = self.anchor(self.skip_spaces(after))?;
            let value = if self.at_line_end(start) {
                self.pos = self.next_line(start);
                // A mapping at column 0 is the document's own.
                if col == 0 && key == "items" && anchor.is_none() && self.items.is_some() {
                    self.items_below()?
                } else {
                    self.node_below(col, true)?
                }
            } else {
                self.pos = start;
                self.inline_value(col)?
            };
            if let Some(name) = anchor {
                self.anchors.insert(name, value.clone());
            }
            if map.insert(key, value).is_some() {
                return self.give_up("a key given twice");
            }
            match self.content_line()? {
                Some(indent) if indent == col && !self.is_sequence_entry(self.pos + indent) => {
                    self.pos += indent;
                    entry = self.key_at(self.pos)?;
                }
                Some(indent) if indent > col => return self.give_up("a line indented deeper than its mapping's keys"),
                _ => return Ok(Value::Object(map)),
            }
        }
    }

    /// The top-level `items` below their key: a block sequence's entries handed to the sink ([`read_items`]), an
    /// empty sequence in their place; anything else read as [`Self::node_below`] reads it.
    fn items_below(&mut self) -> Read<Value> {
        match self.content_line()? {
            Some(indent) if self.is_sequence_entry(self.pos + indent) => {
                self.pos += indent;
                self.sequence_to(indent, true)
            }
            _ => self.node_below(0, true),
        }
    }

    /// A block sequence whose entries' `-` sit at column `col`, the reader at the first.
    fn sequence(&mut self, col: usize) -> Read<Value> {
        self.sequence_to(col, false)
    }

    /// The same; with `stream`, each entry goes to the sink with its lines instead of into the sequence.
    fn sequence_to(&mut self, col: usize, stream: bool) -> Read<Value> {
        let mut items = Vec::new();
        loop {
            let dash = self.pos;
            let (anchor, start) = self.anchor(self.skip_spaces(dash + 1))?;
            let item = if self.at_line_end(start) {
                self.pos = self.next_line(start);
                self.node_below(col, false)?
            } else if self.b[start] == b'\t' {
                self.pos = start;
                return self.give_up("a tab after a sequence entry's dash");
            } else {
                self.pos = start;
                let inner = col + (start - dash);
                let first = if self.is_sequence_entry(start) { None } else { self.key_at(start)? };
                if anchor.is_some() && (first.is_some() || self.is_sequence_entry(start)) {
                    return self.give_up("an anchor on a compact collection's first entry");
                }
                match first {
                    Some(first) => self.mapping(inner, first)?,
                    None if self.is_sequence_entry(start) => self.sequence(inner)?,
                    None => self.inline_value(col)?,
                }
            };
            if let Some(name) = anchor {
                self.anchors.insert(name, item.clone());
            }
            match self.items.as_mut().filter(|_| stream) {
                Some(sink) => {
                    let from = self.text[..dash].rfind('\n').map_or(0, |n| n + 1);
                    let text: &'a str = &self.text[from..self.pos];
                    sink(item, text);
                }
                None => items.push(item),
            }
            match self.content_line()? {
                Some(indent) if indent == col && self.is_sequence_entry(self.pos + indent) => self.pos += indent,
                Some(indent) if indent > col => {
                    return self.give_up("a line indented deeper than its sequence's entries");
                }
                _ => return Ok(Value::Array(items)),
            }
        }
    }

    /// A scalar (or an empty flow collection) that starts on the line of its mapping key or sequence dash, the
    /// reader at its first character; `parent` is the column of the collection it belongs to. Leaves the reader at
    /// the start of the line after it.
    fn inline_value(&mut self, parent: usize) -> Read<Value> {
        let at = self.pos;
        let next = self.b.get(at + 1).copied();
        match self.b[at] {
            b'|' => self.literal(parent).map(Value::String),
            b'"' => {
                let text = self.double_quoted(parent)?;
                self.end_of_line()?;
                Ok(Value::String(text))
            }
            b'\'' => {
                let text = self.single_quoted(parent)?;
                self.end_of_line()?;
                Ok(Value::String(text))
            }
            b'{' | b'[' if next == Some(if self.b[at] == b'{' { b'}' } else { b']' }) => {
                self.pos = at + 2;
                self.end_of_line()?;
                Ok(if self.b[at] == b'{' { Value::Object(Map::new()) } else { Value::Array(Vec::new()) })
            }
            b'{' | b'[' => self.give_up("a flow collection"),
            b'>' => self.give_up("a folded block scalar"),
            b'*' => {
                let end = self.anchor_name_end(at + 1)?;
                let Some(value) = self.anchors.get(&self.text[at + 1..end]).cloned() else {
                    return self.give_up("an alias of no anchor before it");
                };
                self.pos = end;
                self.end_of_line()?;
                Ok(value)
            }
            b'&' | b'!' => self.give_up("a tag, or a second anchor"),
            b'%' | b'@' | b'`' | b',' | b']' | b'}' | b'\t' => self.give_up("a reserved character"),
            b'?' | b':' | b'-' if matches!(next, None | Some(b' ' | b'\n' | b'\t')) => {
                self.give_up("an indicator where a value was expected")
            }
            _ => self.plain(parent),
        }
    }

    /// The anchor (`&name`) at `at`, if there is one, and where the node it names starts (past spaces).
    fn anchor(&mut self, at: usize) -> Read<(Option<String>, usize)> {
        if self.b.get(at) != Some(&b'&') {
            return Ok((None, at));
        }
        let end = self.anchor_name_end(at + 1)?;
        let node = self.skip_spaces(end);
        if self.b.get(node) == Some(&b'*') {
            self.pos = node;
            return self.give_up("an anchor on an alias");
        }
        Ok((Some(self.text[at + 1..end].to_string()), node))
    }

    /// The end of the anchor or alias name that starts at `at`.
    fn anchor_name_end(&mut self, at: usize) -> Read<usize> {
        let mut end = at;
        while let Some(&c) = self.b.get(end) {
            match c {
                b' ' | b'\n' => break,
                b',' | b'[' | b']' | b'{' | b'}' | b'\t' => {
                    self.pos = end;
                    return self.give_up("an anchor name YAML would end in a flow collection");
                }
                _ => end += 1,
            }
        }
        if end == at {
            self.pos = at;
            return self.give_up("an anchor or alias without a name");
        }
        Ok(end)
    }

    /// Past a quoted scalar or `{}`: only spaces and a comment may follow on its line.
    fn end_of_line(&mut self) -> Read<()> {
        let at = self.skip_spaces(self.pos);
        if !self.at_line_end(at) {
            self.pos = at;
            return self.give_up("text after a quoted scalar");
        }
        self.pos = self.next_line(at);
        Ok(())
    }

    /// The text of a plain-scalar line from `at` to `end`, without a trailing comment or spaces, and whether a
    /// comment ended it; gives up on a line that YAML would read as a mapping, or that holds a tab.
    fn plain_line(&mut self, at: usize, end: usize) -> Read<(&str, bool)> {
        let line = &self.b[at..end];
        let mut cut = line.len();
        let mut from = 0;
        while let Some(found) = memchr::memchr3(b'#', b':', b'\t', &line[from..]) {
            let i = from + found;
            from = i + 1;
            match line[i] {
                b'#' if i > 0 && line[i - 1] == b' ' => {
                    cut = i;
                    break;
                }
                b':' if matches!(line.get(i + 1), None | Some(b' ')) => {
                    self.pos = at;
                    return self.give_up("a mapping where a scalar was expected");
                }
                b'\t' => {
                    self.pos = at;
                    return self.give_up("a tab in a plain scalar");
                }
                _ => {}
            }
        }
        Ok((self.text[at..at + cut].trim_end_matches(' '), cut < line.len()))
    }

    /// A plain scalar, continued on the lines indented deeper than `parent` that follow it (folded as YAML folds
    /// them), resolved as YAML resolves it.
    fn plain(&mut self, parent: usize) -> Read<Value> {
        let at = self.pos;
        let end = self.line_end(at);
        let (first, mut commented) = self.plain_line(at, end)?;
        let mut text = first.to_string();
        self.pos = self.next_line(end);
        while !commented {
            let mut line = self.pos;
            let mut breaks = 0;
            let content = loop {
                let at = self.skip_spaces(line);
                match self.b.get(at) {
                    None => break None,
                    Some(b'\n') => {
                        breaks += 1;
                        line = at + 1;
                    }
                    Some(b'\t') => {
                        self.pos = at;
                        return self.give_up("a tab after a plain scalar");
                    }
                    Some(b'#') => break None,
                    Some(_) if at - line > parent => break Some(at),
                    Some(_) => break None,
                }
            };
            let Some(at) = content else { break };
            if self.is_sequence_entry(at) {
                self.pos = at;
                return self.give_up("a dash at the start of a plain scalar's continuation");
            }
            let end = self.line_end(at);
            let (more, comment) = self.plain_line(at, end)?;
            if breaks == 0 {
                text.push(' ');
            } else {
                text.extend(std::iter::repeat_n('\n', breaks));
            }
            text.push_str(more);
            commented = comment;
            self.pos = self.next_line(end);
        }
        if !maybe_not_string(&text) {
            return Ok(Value::String(text));
        }
        if text.contains('\n') {
            return self.give_up("a plain scalar over lines that may not be a string");
        }
        match self.scalars.resolve(&text) {
            Some(value) => Ok(value),
            None => self.give_up("a plain scalar the general parser does not read alone"),
        }
    }

    /// After an unescaped line break inside a quoted scalar at `at`: folds it and the empty lines after it into `out`
    /// as YAML folds them, and returns where the next line's text starts. Continuation lines must be indented deeper
    /// than `parent`.
    fn fold(&mut self, mut at: usize, parent: usize, out: &mut String, escaped: bool) -> Read<usize> {
        let mut breaks = 0;
        loop {
            let start = at;
            at = self.skip_spaces(at);
            if self.b.get(at) == Some(&b'\t') {
                self.pos = at;
                return self.give_up("a tab at the start of a quoted scalar's line");
            }
            match self.b.get(at) {
                None => {
                    self.pos = at;
                    return self.give_up("a quoted scalar left open");
                }
                Some(b'\n') => {
                    breaks += 1;
                    at += 1;
                }
                Some(_) => {
                    if at - start <= parent {
                        self.pos = at;
                        return self.give_up("a quoted scalar's continuation not indented deeper than its parent");
                    }
                    break;
                }
            }
        }
        match (escaped, breaks) {
            (false, 0) => out.push(' '),
            (_, n) => out.extend(std::iter::repeat_n('\n', n)),
        }
        Ok(at)
    }

    /// A single-quoted scalar, the reader at its opening quote; leaves the reader past the closing one.
    fn single_quoted(&mut self, parent: usize) -> Read<String> {
        let mut out = String::new();
        let mut at = self.pos + 1;
        loop {
            let run_end = memchr::memchr2(b'\'', b'\n', &self.b[at..]).map_or(self.b.len(), |i| at + i);
            out.push_str(&self.text[at..run_end]);
            match self.b.get(run_end) {
                Some(b'\'') if self.b.get(run_end + 1) == Some(&b'\'') => {
                    out.push('\'');
                    at = run_end + 2;
                }
                Some(b'\'') => {
                    self.pos = run_end + 1;
                    return Ok(out);
                }
                Some(_) => {
                    out.truncate(out.trim_end_matches([' ', '\t']).len());
                    at = self.fold(run_end + 1, parent, &mut out, false)?;
                }
                None => {
                    self.pos = run_end;
                    return self.give_up("a quoted scalar left open");
                }
            }
        }
    }

    /// A double-quoted scalar, escapes decoded, the reader at its opening quote; leaves the reader past the closing
    /// one.
    fn double_quoted(&mut self, parent: usize) -> Read<String> {
        let mut out = String::new();
        // How much of `out` a line break may not trim: text up to the last escape or character that is not white.
        let mut kept = 0;
        let mut at = self.pos + 1;
        loop {
            let run_end = memchr::memchr3(b'"', b'\\', b'\n', &self.b[at..]).map_or(self.b.len(), |i| at + i);
            let run = &self.text[at..run_end];
            out.push_str(run);
            let trimmed = run.trim_end_matches([' ', '\t']);
            if !trimmed.is_empty() {
                kept = out.len() - (run.len() - trimmed.len());
            }
            match self.b.get(run_end) {
                Some(b'"') => {
                    self.pos = run_end + 1;
                    return Ok(out);
                }
                Some(b'\n') => {
                    out.truncate(kept);
                    at = self.fold(run_end + 1, parent, &mut out, false)?;
                    kept = out.len();
                }
                Some(b'\\') if self.b.get(run_end + 1) == Some(&b'\n') => {
                    at = self.fold(run_end + 2, parent, &mut out, true)?;
                    kept = out.len();
                }
                Some(b'\\') => {
                    at = self.escape(run_end + 1, &mut out)?;
                    kept = out.len();
                }
                _ => {
                    self.pos = run_end;
                    return self.give_up("a quoted scalar left open");
                }
            }
        }
    }

    /// The escape whose letter is at `at`, decoded into `out`; returns where the text after it starts.
    fn escape(&mut self, at: usize, out: &mut String) -> Read<usize> {
        let simple = match self.b.get(at) {
            Some(b'0') => '\0',
            Some(b'a') => '\x07',
            Some(b'b') => '\x08',
            Some(b't' | b'\t') => '\t',
            Some(b'n') => '\n',
            Some(b'v') => '\x0b',
            Some(b'f') => '\x0c',
            Some(b'r') => '\r',
            Some(b'e') => '\x1b',
            Some(b' ') => ' ',
            Some(b'"') => '"',
            Some(b'/') => '/',
            Some(b'\\') => '\\',
            Some(b'N') => '\u{85}',
            Some(b'_') => '\u{a0}',
            Some(b'L') => '\u{2028}',
            Some(b'P') => '\u{2029}',
            Some(&c @ (b'x' | b'u' | b'U')) => {
                let digits = match c {
                    b'x' => 2,
                    b'u' => 4,
                    _ => 8,
                };
                let hex = self.text.get(at + 1..at + 1 + digits).filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()));
                match hex.and_then(|h| u32::from_str_radix(h, 16).ok()).and_then(char::from_u32) {
                    Some(c) => {
                        out.push(c);
                        return Ok(at + 1 + digits);
                    }
                    None => {
                        self.pos = at;
                        return self.give_up("an escape that is not a character");
                    }
                }
            }
            _ => {
                self.pos = at;
                return self.give_up("an unknown escape");
            }
        };
        out.push(simple);
        Ok(at + 1)
    }

    /// A literal block scalar (`|`), the reader at its indicator; `parent` is the column of the collection it
    /// belongs to. Leaves the reader at the start of the first line after it.
    fn literal(&mut self, parent: usize) -> Read<String> {
        #[derive(PartialEq)]
        enum Chomp {
            Strip,
            Clip,
            Keep,
        }
        let (mut chomp, mut explicit) = (None, None);
        let mut at = self.pos + 1;
        loop {
            match self.b.get(at) {
                Some(b'-') if chomp.is_none() => chomp = Some(Chomp::Strip),
                Some(b'+') if chomp.is_none() => chomp = Some(Chomp::Keep),
                Some(&d @ b'1'..=b'9') if explicit.is_none() => explicit = Some(usize::from(d - b'0')),
                _ => break,
            }
            at += 1;
        }
        let chomp = chomp.unwrap_or(Chomp::Clip);
        let after = self.skip_spaces(at);
        if !(self.at_line_end(after) && (after > at || matches!(self.b.get(after), None | Some(b'\n')))) {
            self.pos = after;
            return self.give_up("a block scalar header with more than indicators");
        }
        let first_line = self.next_line(after);
        let indent = match explicit {
            Some(d) => parent + d,
            None => {
                // The first line with text sets the indentation; blank lines before it may not be longer.
                let (mut line, mut longest_blank) = (first_line, 0);
                loop {
                    let text = self.skip_spaces(line);
                    match self.b.get(text) {
                        Some(b'\n') => {
                            longest_blank = longest_blank.max(text - line);
                            line = text + 1;
                        }
                        // No text at all: every line is empty, however many spaces it holds.
                        None => break usize::MAX,
                        Some(b'\t') if text - line <= parent => {
                            self.pos = text;
                            return self.give_up("a tab where a block scalar's indentation is expected");
                        }
                        Some(_) => {
                            if longest_blank > text - line {
                                self.pos = text;
                                return self
                                    .give_up("a block scalar's leading blank line longer than its text's indentation");
                            }
                            break text - line;
                        }
                    }
                }
            }
        };
        let mut body = String::new();
        // The general parser ends the last line with a break even where the input ends without one.
        let mut content_end = None;
        let mut line = first_line;
        while line < self.b.len() {
            let text = self.skip_spaces(line);
            let end = self.line_end(line);
            let blank = text == end;
            if !blank && text - line < indent.max(parent + 1) {
                if self.b[text] == b'\t' {
                    self.pos = text;
                    return self.give_up("a tab where a block scalar's indentation is expected");
                }
                break;
            }
            if blank && end - line <= indent {
                // A blank last line without a break adds nothing.
                if end < self.b.len() {
                    body.push('\n');
                }
            } else {
                body.push_str(&self.text[line + indent..end]);
                content_end = Some(body.len());
                body.push('\n');
            }
            line = (end + 1).min(self.b.len());
        }
        self.pos = line;
        Ok(match (chomp, content_end) {
            (Chomp::Keep, None) => return self.give_up("an empty block scalar that keeps its line breaks"),
            (Chomp::Keep, Some(_)) => body,
            (_, None) => String::new(),
            (Chomp::Strip, Some(end)) => body[..end].to_string(),
            (Chomp::Clip, Some(end)) => {
                body.truncate(end + 1);
                body
            }
        })
    }
}

/// Where a quoted scalar that starts `line` closes (just past its closing quote), when it closes on that line.
fn quoted_end(line: &[u8]) -> Option<usize> {
    let quote = line[0];
    let mut i = 1;
    while i < line.len() {
        match line[i] {
            b'\\' if quote == b'"' => i += 2,
            b'\'' if quote == b'\'' && line.get(i + 1) == Some(&b'\'') => i += 2,
            c if c == quote => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn general(text: &str) -> Result<Value, String> {
        serde_saphyr::from_str_with_options(text, super::super::options(text.len())).map_err(|e| e.to_string())
    }

    /// The block reader's reading of `text`, checked against the general parser's when it reads it.
    fn compared(text: &str) -> Read<Value> {
        let read = read(text, &mut Scalars::default());
        if let Ok(value) = &read {
            assert_eq!(Ok(value.clone()), general(text), "the two readings of {text:?} differ");
        }
        read
    }

    /// What kubectl and other dumpers write, in the shapes the block reader reads.
    const READ_ALIKE: &[&str] = &[
        // Go's YAML libraries: folded long plain and single-quoted scalars, quoted number-like strings.
        "status:\n  conditions:\n  - message: '0/3 nodes are available: 1 node(s) had taint {node-role.kubernetes.io/master:\n      }, that the pod didn''t tolerate, 2 Insufficient cpu.'\n    reason: Unschedulable\n    status: \"False\"\n",
        "message: Back-off 5m0s restarting failed container=app pod=web-5d4c3b2a1-x2k9p_shop(0a1b2c3d-4e5f)\n  in namespace shop after a very long time\nnext: 1\n",
        "data:\n  script: |\n    #!/bin/sh\n    set -e\n\n      indented more\n    echo done\n  keep: |+\n    a\n\n  strip: |-\n    b\n\n  explicit: |2-\n      leading spaces\n    x\n  empty: |\n  after: 2\n",
        "a: \"line one\\nline two \\t\\u00e9\\x41\\U0001F600 \\\"q\\\" \\\\ \\/ \\_\\N\"\nb: \"folded\n  across\n\n  lines \\\n  joined\\ \n  end\"\n",
        "- - a\n  - b\n- - c\n-\n  d: 1\n- k: v\n  l:\n  - x\n  -\n- {}\n- []\n- ''\n- \"\"\n- ~\n- null\n- \n",
        "list:\n- a\n- b\nmap:\n  x: 1\n# a comment\n  # an indented one\n\nyy: 2 # trailing\nz: 'it''s' # quoted then comment\n",
        "n1: []\nm: {}\nv: 1.10\nw: 0123\nx: 2e7696897\nyes_word: yes\nsci: 1e999\nhex: 0x1F\noct: 0o17\nneg: -12\nplus: +12\nunderscore: 1_000\ndot: .5\ninf: -.inf\nnan: .NaN\ntilde: ~\n",
        "uid: 5a1e9f0c-2b7d-4c3e-8f6a-1d2c3b4a5e61\nip: 10.0.1.21\nimage: registry.example.com/web:1.0.0\nurl: http://a/b#frag\nhash: a#b\nweird: -v\ndashes: --workers\nkey with spaces: value with spaces\n\"quoted key\": 1\n'single key': 2\n",
        "---\napiVersion: v1\nkind: Pod\n...\n",
        "--- # a comment\na: 1\n",
        "labels: &id001\n  app: web\nselector:\n  matchLabels: *id001\nitems:\n- &first\n  name: a\n- *first\n- &s scalar\n- *s\n",
        "text: 'one\n\n  two'\n",
        "a:\n  b:\n    c:\n      d: deep\n  e: back\nf: top\n",
        "plain: trailing spaces   \nquoted: \"x\"   \n",
        "tabbed: \"a\tb\"\nsingle: 'c\td'\nliteral: |\n  \tindented by a tab\n",
        "unicode: héllo wörld ✓\nemoji: \"😀\"\n",
        "ends: without newline",
        "block: |\n  no final newline",
        "keep: |+\n  a\n\n",
        "keep: |+\n  a\n  ",
        "keep: |+\n  a\n\n  \n",
        "keep: |+\n  a\n  \nb: 1\n",
        " strip: |-\n  \n  \n",
    ];

    #[test]
    fn what_kubectl_and_other_dumpers_write_reads_as_the_general_parser_reads_it() {
        for text in READ_ALIKE {
            if let Err(gave_up) = compared(text) {
                panic!("gave up on {text:?} at line {}: {}", gave_up.line, gave_up.reason);
            }
        }
    }

    #[test]
    fn what_it_does_not_read_it_leaves_to_the_general_parser() {
        let left = [
            "a: {b: 1}\n",
            "a: [1, 2]\n",
            "a: >\n  folded\n",
            "a: !!str 1\n",
            "? complex\n: key\n",
            "<<: *base\n",
            "a:\tb\n",
            "a: 1\r\nb: 2\r\n",
            "\u{feff}a: 1\n",
            "a: 1\na: 2\n",
            "%YAML 1.2\n---\na: 1\n",
            "--- a: 1\n",
            "just a scalar\n",
            "a:\n  scalar on its own line\n",
            "a: b: c\n",
            "a: *missing\n",
            "1: one\n",
            "True: 1\n",
            "n: [ ]\n",
            "a: 1\n - b\n",
            "a: \"open\n",
            "a: |\n  x\n b: 1\n",
            "a: -\n",
            "a: 'x\ny'\n",
            // Found by the mutation test below: what the general parser refuses, left to it to say so.
            "labels: &a *id001\n",
            "text: 'one: \n\t\n  :two'\n",
            "literal: |\n\t #indented by a tab\n",
            "... : \n",
        ];
        for text in left {
            assert!(compared(text).is_err(), "read {text:?}, which it should leave to the general parser");
        }
    }

    /// Random documents of awkward strings and nesting, written by serde-saphyr's emitter, read both ways.
    #[test]
    fn random_documents_read_as_the_general_parser_reads_them() {
        const WORDS: [&str; 24] = [
            "web",
            "1.10",
            "0123",
            "2e7696897",
            "yes",
            "No",
            "~",
            "null",
            "",
            " lead",
            "trail ",
            "a: b",
            "# hash",
            "it's",
            "\"q\"",
            "multi\nline",
            "tab\there",
            "-v",
            "- item",
            "é✓",
            "{x}",
            "[y]",
            "12",
            "-.5",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        fn value(depth: usize, next: &mut dyn FnMut(usize) -> usize) -> Value {
            match if depth > 3 { next(4) } else { next(7) } {
                0 => Value::String(WORDS[next(WORDS.len())].to_string()),
                1 => Value::from(next(100_000)),
                2 => Value::Bool(next(2) == 0),
                3 => Value::Null,
                4 | 5 => Value::Object(
                    (0..next(4)).map(|i| (format!("k{i}-{}", WORDS[next(3)]), value(depth + 1, next))).collect(),
                ),
                _ => Value::Array((0..next(4)).map(|_| value(depth + 1, next)).collect()),
            }
        }
        let (mut read, mut total) = (0, 0);
        for _ in 0..300 {
            let document = Value::Object((0..3).map(|i| (format!("top{i}"), value(0, &mut next))).collect());
            let text = serde_saphyr::to_string(&document).unwrap();
            total += 1;
            if compared(&text).is_ok() {
                read += 1;
            }
        }
        // Most are read here; the rest (flow collections, for one) go to the general parser, compared or not.
        eprintln!("read {read} of {total}");
        assert!(read * 2 > total, "the block reader read only {read} of {total} documents");
    }

    /// A small mutation fuzzer over pieces of the scenario dumps and the snippets above: characters YAML gives
    /// meaning to put in, taken out, lines moved in and out. Whatever the block reader reads must read alike.
    #[test]
    fn mutated_dumps_read_as_the_general_parser_reads_them_or_are_left_to_it() {
        const INSERTS: [&str; 24] = [
            " ", "\n", ": ", ":", "- ", "-", "#", " #", "'", "\"", "\\", "|", "|-", ">", "&a ", "*a", "!", "{", "[]",
            ",", "\t", "0", "e5", "é",
        ];
        let mut sources: Vec<String> =
            super::super::tests::scenario_dumps().into_iter().map(|(_, text)| text).collect();
        sources.extend(READ_ALIKE.iter().map(|s| s.to_string()));
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n.max(1) as u64) as usize
        };
        let (mut read, mut total) = (0, 0);
        for _ in 0..5000 {
            let source = if next(2) == 0 {
                &sources[sources.len() - 1 - next(READ_ALIKE.len())]
            } else {
                &sources[next(sources.len())]
            };
            let lines: Vec<&str> = source.lines().collect();
            // A piece that starts where a top-level node does, so that most pieces are documents; a quarter of them at
            // a file's start, so that most of those are lists, read item by item.
            let tops: Vec<usize> = (0..lines.len()).filter(|&i| !lines[i].starts_with(' ')).collect();
            let start = if next(4) == 0 { 0 } else { tops.get(next(tops.len())).copied().unwrap_or(0) };
            let mut text = lines[start..lines.len().min(start + 30 + next(60))].join("\n") + "\n";
            for _ in 0..1 + next(6) {
                let mut at = next(text.len());
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                match next(5) {
                    0 | 1 => text.insert_str(at, INSERTS[next(INSERTS.len())]),
                    2 => {
                        if let Some(c) = text[at..].chars().next() {
                            text.replace_range(at..at + c.len_utf8(), "");
                        }
                    }
                    3 => {
                        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                        text.insert(line_start, ' ');
                    }
                    _ => {
                        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                        if text[line_start..].starts_with(' ') {
                            text.remove(line_start);
                        }
                    }
                }
            }
            total += 1;
            if super::super::readings_agree(&text).is_empty() {
                read += 1;
            }
        }
        eprintln!("read {read} of {total} mutated pieces");
        assert!(read * 5 > total, "the block reader read only {read} of {total} mutated pieces");
    }

    #[test]
    fn the_scenario_dumps_read_as_the_general_parser_reads_them() {
        let mut documents = 0;
        for (path, text) in super::super::tests::scenario_dumps() {
            for chunk in super::super::split(&text) {
                if let Err(gave_up) = compared(chunk) {
                    panic!("{}: gave up at line {} of a document: {}", path.display(), gave_up.line, gave_up.reason);
                }
                documents += 1;
            }
        }
        assert!(documents >= 40, "{documents}");
    }
}
