//! Reading a template's YAML into a tree that keeps what CloudFormation
//! needs and what an error needs: tags (`!Ref`, `!Sub`, `!GetAtt` …) as
//! data, and each node's line and column.
//!
//! Owns decoding (UTF-8, a BOM allowed), parsing with yaml-rust2's event
//! parser, and bounding alias expansion: an alias shares the anchored node
//! (`Arc`), and the nodes it would expand to are counted, so a document of
//! nested aliases (a "billion laughs") is refused after [`MAX_NODES`]
//! instead of filling memory. It does not interpret CloudFormation or
//! Serverless (`super` does).

use std::collections::HashMap;
use std::sync::Arc;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// More nodes than any real template has (CloudFormation caps a template
/// at 1 MB, a few tens of thousands of nodes), few enough to count fast.
pub(crate) const MAX_NODES: usize = 1_000_000;

#[derive(Debug)]
pub(crate) enum Value {
    Null,
    Str(String),
    Seq(Vec<Arc<Node>>),
    Map(Vec<(Arc<Node>, Arc<Node>)>),
}

#[derive(Debug)]
pub(crate) struct Node {
    pub value: Value,
    /// A local tag without its `!` (`Ref`, `Sub`, `GetAtt`); YAML's own
    /// `!!str` and friends are not kept.
    pub tag: Option<String>,
    /// 1-based.
    pub line: usize,
    /// 1-based.
    pub col: usize,
    /// Nodes in this one once aliases are expanded (itself included).
    size: usize,
}

/// A decode or parse failure, with its 1-based position.
#[derive(Debug)]
pub(crate) struct YamlError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

static NULL: Node = Node {
    value: Value::Null,
    tag: None,
    line: 0,
    col: 0,
    size: 1,
};

impl Node {
    /// `self[key]` for a mapping; a null node when absent.
    pub(crate) fn get(&self, key: &str) -> &Node {
        match &self.value {
            Value::Map(items) => items
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v.as_ref())
                .unwrap_or(&NULL),
            _ => &NULL,
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self.value, Value::Null) && self.tag.is_none()
    }

    /// An untagged scalar's text.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match (&self.value, &self.tag) {
            (Value::Str(s), None) => Some(s),
            _ => None,
        }
    }

    /// A scalar's text, tagged or not (an intrinsic's argument).
    pub(crate) fn scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn entries(&self) -> &[(Arc<Node>, Arc<Node>)] {
        match &self.value {
            Value::Map(items) => items,
            _ => &[],
        }
    }

    pub(crate) fn items(&self) -> &[Arc<Node>] {
        match &self.value {
            Value::Seq(items) => items,
            _ => &[],
        }
    }

    /// A CloudFormation intrinsic, short (`!Ref X`) or long
    /// (`{"Fn::Sub": …}`, `{"Ref": X}`) form: its name without `Fn::`, and
    /// its argument.
    pub(crate) fn intrinsic(&self) -> Option<(&str, &Node)> {
        if let Some(t) = &self.tag {
            return Some((t, self));
        }
        match self.entries() {
            [(k, v)] => {
                let k = k.as_str()?;
                let name = k.strip_prefix("Fn::").or((k == "Ref").then_some(k))?;
                Some((name, v))
            }
            _ => None,
        }
    }

    /// The node as YAML-ish text for a comment or a message, cut at about
    /// `limit` characters (a shared alias is never walked past that).
    pub(crate) fn show(&self, limit: usize) -> String {
        let mut out = String::new();
        self.show_into(&mut out, limit);
        if out.len() > limit {
            let mut cut = limit;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push('…');
        }
        out
    }

    fn show_into(&self, out: &mut String, limit: usize) {
        if out.len() > limit {
            return;
        }
        if let Some(t) = &self.tag {
            out.push('!');
            out.push_str(t);
            out.push(' ');
        }
        match &self.value {
            Value::Null => out.push_str("null"),
            Value::Str(s) => out.push_str(s),
            Value::Seq(items) => {
                out.push('[');
                for (i, n) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    n.show_into(out, limit);
                    if out.len() > limit {
                        return;
                    }
                }
                out.push(']');
            }
            Value::Map(items) => {
                if self.tag.is_none()
                    && let Some((name, arg)) = self.intrinsic()
                {
                    out.push('!');
                    out.push_str(name);
                    out.push(' ');
                    arg.show_into(out, limit);
                    return;
                }
                out.push('{');
                for (i, (k, v)) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    k.show_into(out, limit);
                    out.push_str(": ");
                    v.show_into(out, limit);
                    if out.len() > limit {
                        return;
                    }
                }
                out.push('}');
            }
        }
    }
}

/// Decodes `bytes` (UTF-8; a BOM is skipped) and parses its first
/// document; an empty file is a null node.
pub(crate) fn load(bytes: &[u8]) -> Result<Arc<Node>, YamlError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let good = &bytes[..e.valid_up_to()];
        let line = good.iter().filter(|b| **b == b'\n').count() + 1;
        let start = good.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        // Characters, not bytes, before the bad one on its line.
        let col = String::from_utf8_lossy(&good[start..]).chars().count() + 1;
        YamlError {
            line,
            col,
            message: format!(
                "not UTF-8 (byte 0x{:02x}); save the file as UTF-8",
                bytes[e.valid_up_to()]
            ),
        }
    })?;
    match parse(text) {
        // yaml-rust2 refuses a multi-line flow collection whose closing
        // bracket sits at its key's indentation after a quoted item
        // (`Action: [⏎ "x",⏎ ]`), which PyYAML and `sam build` read. A line
        // starting with `]` or `}` is inside a flow collection (or a block
        // scalar): indenting it one more column changes no value a template
        // carries over, and no other line's position.
        Err(e) if e.message == "invalid indentation" => {
            let indented: String = text
                .split_inclusive('\n')
                .map(|l| {
                    if l.trim_start().starts_with([']', '}']) {
                        format!(" {l}")
                    } else {
                        l.to_string()
                    }
                })
                .collect();
            parse(&indented).map_err(|_| e)
        }
        other => other,
    }
}

fn parse(text: &str) -> Result<Arc<Node>, YamlError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, false) {
        let m = e.marker();
        return Err(YamlError {
            line: m.line(),
            col: m.col() + 1,
            message: e.info().to_string(),
        });
    }
    if let Some(e) = builder.error {
        return Err(e);
    }
    Ok(builder.root.unwrap_or_else(|| Arc::new(null_at(1, 1))))
}

fn null_at(line: usize, col: usize) -> Node {
    Node {
        value: Value::Null,
        tag: None,
        line,
        col,
        size: 1,
    }
}

enum Frame {
    Seq(Node, usize),
    Map(Node, usize, Option<Arc<Node>>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Arc<Node>>,
    root: Option<Arc<Node>>,
    /// Nodes so far, aliases counted as what they expand to.
    expanded: usize,
    error: Option<YamlError>,
    done: bool,
}

fn local_tag(tag: Option<yaml_rust2::parser::Tag>) -> Option<String> {
    let t = tag?;
    (t.handle == "!").then_some(t.suffix)
}

impl Builder {
    fn push(&mut self, node: Arc<Node>, anchor: usize, mark: Marker) {
        self.expanded = self.expanded.saturating_add(node.size);
        if self.expanded > MAX_NODES && self.error.is_none() {
            self.error = Some(YamlError {
                line: mark.line(),
                col: mark.col() + 1,
                message: format!(
                    "aliases here expand to more than {MAX_NODES} nodes; refusing to expand them (a template does not need nested aliases this deep)"
                ),
            });
        }
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                self.done = true;
            }
            Some(Frame::Seq(parent, _)) => {
                parent.size = parent.size.saturating_add(node.size);
                if let Value::Seq(items) = &mut parent.value {
                    items.push(node);
                }
            }
            Some(Frame::Map(parent, _, key)) => {
                parent.size = parent.size.saturating_add(node.size);
                match key.take() {
                    None => *key = Some(node),
                    Some(k) => {
                        if let Value::Map(items) = &mut parent.value {
                            items.push((k, node));
                        }
                    }
                }
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.done || self.error.is_some() {
            return;
        }
        let (line, col) = (mark.line(), mark.col() + 1);
        match ev {
            Event::Scalar(s, style, anchor, tag) => {
                let tag = local_tag(tag);
                let null = style == TScalarStyle::Plain
                    && tag.is_none()
                    && matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL");
                let value = if null { Value::Null } else { Value::Str(s) };
                let node = Node {
                    value,
                    tag,
                    line,
                    col,
                    size: 1,
                };
                self.push(Arc::new(node), anchor, mark);
            }
            Event::SequenceStart(anchor, tag) => {
                let mut node = null_at(line, col);
                node.value = Value::Seq(Vec::new());
                node.tag = local_tag(tag);
                self.stack.push(Frame::Seq(node, anchor));
            }
            Event::MappingStart(anchor, tag) => {
                let mut node = null_at(line, col);
                node.value = Value::Map(Vec::new());
                node.tag = local_tag(tag);
                self.stack.push(Frame::Map(node, anchor, None));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq(n, a)) | Some(Frame::Map(n, a, _)) => (n, a),
                    None => return,
                };
                // The container's own nodes were counted as they arrived.
                self.expanded -= node.size - 1;
                self.push(Arc::new(node), anchor, mark);
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(node) => self.push(node, 0, mark),
                None => {
                    self.error = Some(YamlError {
                        line,
                        col,
                        message: "alias to an anchor not defined before it".into(),
                    })
                }
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_positions_and_multiline_flow_sequences() {
        let doc = load(
            b"Resources:\n  Fn:\n    Properties:\n      Policies:\n        - Statement:\n            - Effect: Allow\n              Action: [\n                \"xray:PutTraceSegments\",\n                \"xray:PutTelemetryRecords\"\n              ]\n      Env: !Ref Table\n      Sub: {\"Fn::Sub\": \"x-${AWS::Region}\"}\n      Arn: !GetAtt [T, Arn]\n",
        )
        .unwrap();
        let props = doc.get("Resources").get("Fn").get("Properties");
        let action = props.get("Policies").items()[0].get("Statement").items()[0].get("Action");
        assert_eq!(action.items().len(), 2);
        assert_eq!(props.get("Env").intrinsic().unwrap().0, "Ref");
        assert_eq!(props.get("Env").intrinsic().unwrap().1.line, 11);
        assert_eq!(props.get("Sub").intrinsic().unwrap().0, "Sub");
        assert_eq!(props.get("Arn").show(100), "!GetAtt [T, Arn]");
        assert_eq!(props.get("Env").col, 17);
    }

    #[test]
    fn errors_have_positions() {
        let e = load(b"a: 1\nb: [1, 2\n").unwrap_err();
        assert!(e.line >= 2, "{e:?}");
        let e = load(b"a: 1\nb: \"caf\xe9\"\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 8), "{e:?}");
        assert!(e.message.contains("UTF-8"));
    }

    #[test]
    fn an_alias_bomb_is_refused_fast_and_small() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let start = std::time::Instant::now();
        let e = load(text.as_bytes()).unwrap_err();
        assert!(e.message.contains("aliases"), "{e:?}");
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
        // A few aliases are fine and shared.
        let ok = load(b"a: &x {k: v}\nb: *x\nc: *x\n").unwrap();
        assert_eq!(ok.get("c").get("k").as_str(), Some("v"));
    }
}
