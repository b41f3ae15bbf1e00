//! The rule language of `segment.rule`, parsed from JSON into a typed tree.
//!
//! ```json
//! {"type": "and", "rules": [
//!   {"type": "condition", "attribute": "total_renders", "operator": ">=", "value": 5},
//!   {"type": "not", "rule": {"type": "condition", "attribute": "country", "operator": "in", "value": ["DE", "FR"]}}
//! ]}
//! ```
//!
//! An attribute is a person column (see [`Column`]) or else a key of `person.attributes` (a
//! trait). The value decides the type of the comparison: a number compares numbers only, a string
//! strings only, and so on. A condition is false for a person who lacks the attribute (SQL NULL,
//! a missing key, JSON `null`) or holds a value of another type, whatever the operator, except
//! `not_exists`; `{"type": "not", ...}` turns that around.
//!
//! Errors name the place in the rule: the `field` of the error is a path such as
//! `rule.rules[1].operator`, and the message starts with it.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Number, Value};

use crate::error::{Error, Result};
use crate::identity::parse_date;

/// Nodes from the root to the deepest condition, the root counting as 1.
pub const MAX_DEPTH: usize = 10;
/// Conditions in one rule.
pub const MAX_CONDITIONS: usize = 200;
/// Values of one `in` / `not_in` list.
pub const MAX_LIST_VALUES: usize = 1000;
/// Characters of a string value.
pub const MAX_STRING_CHARS: usize = 1000;
/// Characters of an attribute name.
pub const MAX_ATTRIBUTE_CHARS: usize = 200;
/// The largest `within_last_days` (100 years).
pub const MAX_DAYS: i64 = 36_500;

#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    Condition(Condition),
    And(Vec<Rule>),
    Or(Vec<Rule>),
    Not(Box<Rule>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub attribute: Attribute,
    pub test: Test,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Attribute {
    Column(Column),
    /// A key of `person.attributes`.
    Trait(String),
}

/// How a column's values compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Date,
    Timestamp,
    Bool,
}

/// The person columns a rule may name. Their SQL names come only from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    ExternalId,
    Email,
    Phone,
    FirstName,
    LastName,
    City,
    State,
    Zip,
    Country,
    Gender,
    DateOfBirth,
    CreatedAt,
    UpdatedAt,
    MarketingOptOut,
}

impl Column {
    pub const ALL: [Column; 14] = [
        Column::ExternalId,
        Column::Email,
        Column::Phone,
        Column::FirstName,
        Column::LastName,
        Column::City,
        Column::State,
        Column::Zip,
        Column::Country,
        Column::Gender,
        Column::DateOfBirth,
        Column::CreatedAt,
        Column::UpdatedAt,
        Column::MarketingOptOut,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Column::ExternalId => "external_id",
            Column::Email => "email",
            Column::Phone => "phone",
            Column::FirstName => "first_name",
            Column::LastName => "last_name",
            Column::City => "city",
            Column::State => "state",
            Column::Zip => "zip",
            Column::Country => "country",
            Column::Gender => "gender",
            Column::DateOfBirth => "date_of_birth",
            Column::CreatedAt => "created_at",
            Column::UpdatedAt => "updated_at",
            Column::MarketingOptOut => "marketing_opt_out",
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Column::DateOfBirth => Kind::Date,
            Column::CreatedAt | Column::UpdatedAt => Kind::Timestamp,
            Column::MarketingOptOut => Kind::Bool,
            _ => Kind::Text,
        }
    }

    pub fn from_name(name: &str) -> Option<Column> {
        Column::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// A value of a condition, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Number(Number),
    Text(String),
    Bool(bool),
    /// A calendar day (`YYYY-MM-DD`), on a date or timestamp column.
    Date(NaiveDate),
    /// An instant (RFC 3339), on a timestamp column.
    Instant(DateTime<Utc>),
}

impl Scalar {
    pub fn type_name(&self) -> &'static str {
        match self {
            Scalar::Number(_) => "number",
            Scalar::Text(_) => "string",
            Scalar::Bool(_) => "boolean",
            Scalar::Date(_) => "date",
            Scalar::Instant(_) => "timestamp",
        }
    }

    fn ordered(&self) -> bool {
        !matches!(self, Scalar::Bool(_))
    }

    /// `a <= b` for two values of one type.
    fn not_after(&self, other: &Scalar) -> bool {
        match (self, other) {
            (Scalar::Number(a), Scalar::Number(b)) => as_f64(a) <= as_f64(b),
            (Scalar::Text(a), Scalar::Text(b)) => a <= b,
            (Scalar::Date(a), Scalar::Date(b)) => a <= b,
            (Scalar::Instant(a), Scalar::Instant(b)) => a <= b,
            _ => true,
        }
    }
}

fn as_f64(n: &Number) -> f64 {
    n.as_f64().unwrap_or(f64::NAN)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    pub fn sql(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "<>",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
        }
    }
}

/// What a condition checks.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Compare(CmpOp, Scalar),
    /// A non-empty list of values of one type.
    In(Vec<Scalar>),
    NotIn(Vec<Scalar>),
    /// Inclusive, `low <= high`.
    Between(Scalar, Scalar),
    /// Text: holds the substring. Trait: a string holding the substring, or an array holding the
    /// value as an element.
    Contains(Scalar),
    StartsWith(String),
    Exists,
    NotExists,
    /// A date or timestamp between `days` days ago and now.
    WithinLastDays(i32),
}

pub const OPERATORS: [&str; 14] = [
    "=",
    "!=",
    ">",
    ">=",
    "<",
    "<=",
    "in",
    "not_in",
    "contains",
    "starts_with",
    "exists",
    "not_exists",
    "between",
    "within_last_days",
];

/// Where in the rule a node sits: `rule`, `rule.rules[1]`, `rule.rules[1].rule` ...
#[derive(Debug, Clone)]
struct Path(String);

impl Path {
    fn key(&self, k: &str) -> Path {
        Path(format!("{}.{k}", self.0))
    }

    fn index(&self, i: usize) -> Path {
        Path(format!("{}[{i}]", self.0))
    }

    fn error(&self, message: impl fmt::Display) -> Error {
        Error::Invalid {
            code: "invalid_rule",
            field: Some(self.0.clone()),
            message: format!("{}: {message}", self.0),
        }
    }
}

impl Rule {
    /// Parses and checks a rule; `prefix` is the path of `value` in the request (`rule`).
    pub fn parse(prefix: &str, value: &Value) -> Result<Rule> {
        let mut conditions = 0;
        parse_node(&Path(prefix.to_string()), value, 1, &mut conditions)
    }

    /// Whether the rule reads `updated_at`, which the change log leaves out (migrations/ V6):
    /// such a rule is evaluated in full at every refresh. (Rules reading the clock,
    /// `within_last_days`, follow the changes and are evaluated in full daily, as every rule:
    /// people leave their window as days pass.)
    pub fn reads_updated_at(&self) -> bool {
        match self {
            Rule::Condition(c) => c.attribute == Attribute::Column(Column::UpdatedAt),
            Rule::And(rs) | Rule::Or(rs) => rs.iter().any(Rule::reads_updated_at),
            Rule::Not(r) => r.reads_updated_at(),
        }
    }

    /// Conditions in the rule.
    pub fn conditions(&self) -> usize {
        match self {
            Rule::Condition(_) => 1,
            Rule::And(rs) | Rule::Or(rs) => rs.iter().map(Rule::conditions).sum(),
            Rule::Not(r) => r.conditions(),
        }
    }
}

fn object<'a>(path: &Path, value: &'a Value) -> Result<&'a Map<String, Value>> {
    value.as_object().ok_or_else(|| {
        path.error(
            "must be a JSON object: a condition {\"type\": \"condition\", \"attribute\", \"operator\", \"value\"} \
             or a group {\"type\": \"and\" | \"or\", \"rules\": [...]} or {\"type\": \"not\", \"rule\": {...}}",
        )
    })
}

fn only_keys(path: &Path, obj: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<()> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(path.key(k).error(format_args!(
            "{k:?} is not a field of {what} (fields: {})",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn parse_node(path: &Path, value: &Value, depth: usize, conditions: &mut usize) -> Result<Rule> {
    let obj = object(path, value)?;
    if depth > MAX_DEPTH {
        return Err(path.error(format_args!(
            "a rule may nest at most {MAX_DEPTH} levels deep"
        )));
    }
    let kind = match obj.get("type") {
        None => {
            return Err(path
                .key("type")
                .error("type is required: condition, and, or, not"))
        }
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(path.key("type").error(format_args!(
                "{other} is not a rule type: use condition, and, or, not"
            )))
        }
    };
    match kind {
        "condition" => {
            only_keys(
                path,
                obj,
                &["type", "attribute", "operator", "value"],
                "a condition",
            )?;
            *conditions += 1;
            if *conditions > MAX_CONDITIONS {
                return Err(path.error(format_args!(
                    "a rule may have at most {MAX_CONDITIONS} conditions"
                )));
            }
            parse_condition(path, obj).map(Rule::Condition)
        }
        "and" | "or" => {
            only_keys(path, obj, &["type", "rules"], &format!("an {kind:?} group"))?;
            let rules_path = path.key("rules");
            let items = match obj.get("rules") {
                Some(Value::Array(items)) if !items.is_empty() => items,
                Some(Value::Array(_)) => {
                    return Err(rules_path.error("must hold at least one rule"));
                }
                None => {
                    return Err(
                        rules_path.error(format_args!("rules is required in an {kind:?} group"))
                    )
                }
                Some(_) => return Err(rules_path.error("must be a list of rules")),
            };
            let rules = items
                .iter()
                .enumerate()
                .map(|(i, v)| parse_node(&rules_path.index(i), v, depth + 1, conditions))
                .collect::<Result<Vec<_>>>()?;
            Ok(if kind == "and" {
                Rule::And(rules)
            } else {
                Rule::Or(rules)
            })
        }
        "not" => {
            only_keys(path, obj, &["type", "rule"], "a \"not\"")?;
            let inner = obj
                .get("rule")
                .ok_or_else(|| path.key("rule").error("rule is required in a \"not\""))?;
            let inner = parse_node(&path.key("rule"), inner, depth + 1, conditions)?;
            Ok(Rule::Not(Box::new(inner)))
        }
        other => Err(path.key("type").error(format_args!(
            "{other:?} is not a rule type: use condition, and, or, not"
        ))),
    }
}

fn parse_condition(path: &Path, obj: &Map<String, Value>) -> Result<Condition> {
    let attr_path = path.key("attribute");
    let attribute = match obj.get("attribute") {
        None => return Err(attr_path.error("attribute is required")),
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err(attr_path.error("must not be empty"))
        }
        Some(Value::String(s)) if s.chars().count() > MAX_ATTRIBUTE_CHARS => {
            return Err(attr_path.error(format_args!(
                "must be at most {MAX_ATTRIBUTE_CHARS} characters"
            )))
        }
        Some(Value::String(s)) => match Column::from_name(s) {
            Some(c) => Attribute::Column(c),
            None => Attribute::Trait(s.clone()),
        },
        Some(_) => return Err(attr_path.error("must be a string: a person column or a trait name")),
    };
    let op_path = path.key("operator");
    let operator = match obj.get("operator") {
        None => return Err(op_path.error("operator is required")),
        Some(Value::String(s)) if OPERATORS.contains(&s.as_str()) => s.as_str(),
        Some(Value::String(s)) => {
            return Err(op_path.error(format_args!(
                "{s:?} is not an operator (operators: {})",
                OPERATORS.join(", ")
            )))
        }
        Some(other) => {
            return Err(op_path.error(format_args!(
                "{other} is not an operator (operators: {})",
                OPERATORS.join(", ")
            )))
        }
    };
    let value_path = path.key("value");
    let value = obj.get("value").filter(|v| !v.is_null());
    let typing = Typing {
        attribute: &attribute,
        operator,
    };
    let need = || {
        value.ok_or_else(|| value_path.error(format_args!("the operator {operator} needs a value")))
    };
    let test = match operator {
        "exists" | "not_exists" => {
            if value.is_some() {
                return Err(value_path.error(format_args!("{operator} takes no value")));
            }
            if operator == "exists" {
                Test::Exists
            } else {
                Test::NotExists
            }
        }
        "=" | "!=" | ">" | ">=" | "<" | "<=" => {
            let op = match operator {
                "=" => CmpOp::Eq,
                "!=" => CmpOp::Ne,
                ">" => CmpOp::Gt,
                ">=" => CmpOp::Ge,
                "<" => CmpOp::Lt,
                _ => CmpOp::Le,
            };
            let v = typing.scalar(&value_path, need()?)?;
            if !matches!(op, CmpOp::Eq | CmpOp::Ne) && !v.ordered() {
                return Err(value_path.error(format_args!(
                    "{operator} compares numbers, strings and dates, not a {}",
                    v.type_name()
                )));
            }
            Test::Compare(op, v)
        }
        "in" | "not_in" => {
            let items = match need()? {
                Value::Array(items) => items,
                _ => {
                    return Err(value_path.error(format_args!("{operator} takes a list of values")))
                }
            };
            if items.is_empty() {
                return Err(value_path.error(format_args!("{operator} needs at least one value")));
            }
            if items.len() > MAX_LIST_VALUES {
                return Err(value_path.error(format_args!(
                    "{operator} takes at most {MAX_LIST_VALUES} values, not {}",
                    items.len()
                )));
            }
            let values = typing.list(&value_path, items)?;
            if operator == "in" {
                Test::In(values)
            } else {
                Test::NotIn(values)
            }
        }
        "between" => {
            let items = match need()? {
                Value::Array(items) if items.len() == 2 => items,
                _ => return Err(value_path.error("between takes [low, high]")),
            };
            let mut values = typing.list(&value_path, items)?;
            let high = values.pop().expect("two values");
            let low = values.pop().expect("two values");
            if !low.ordered() {
                return Err(value_path.error("between compares numbers, strings and dates"));
            }
            if !low.not_after(&high) {
                return Err(value_path.error("between takes [low, high] with low <= high"));
            }
            Test::Between(low, high)
        }
        "contains" | "starts_with" => {
            if let Attribute::Column(c) = &attribute {
                if c.kind() != Kind::Text {
                    return Err(op_path.error(format_args!(
                        "{operator} applies to text columns and to traits, not to {}",
                        c.name()
                    )));
                }
            }
            match (operator, typing.scalar(&value_path, need()?)?) {
                (_, Scalar::Text(s)) if s.is_empty() => {
                    return Err(
                        value_path.error(format_args!("{operator} needs a non-empty string"))
                    )
                }
                ("starts_with", Scalar::Text(s)) => Test::StartsWith(s),
                ("starts_with", _) => {
                    return Err(value_path.error("starts_with needs a non-empty string"))
                }
                (_, v) => Test::Contains(v),
            }
        }
        _ => {
            // within_last_days
            if let Attribute::Column(c) = &attribute {
                if !matches!(c.kind(), Kind::Date | Kind::Timestamp) {
                    return Err(op_path.error(format_args!(
                        "within_last_days applies to dates, timestamps and date traits, not to {}",
                        c.name()
                    )));
                }
            }
            let days = need()?.as_i64().filter(|d| (1..=MAX_DAYS).contains(d));
            match days {
                Some(d) => Test::WithinLastDays(d as i32),
                None => {
                    return Err(value_path.error(format_args!(
                        "within_last_days takes a whole number of days from 1 to {MAX_DAYS}"
                    )))
                }
            }
        }
    };
    Ok(Condition { attribute, test })
}

/// Turns JSON values into the scalars the attribute compares with.
struct Typing<'a> {
    attribute: &'a Attribute,
    operator: &'a str,
}

impl Typing<'_> {
    fn scalar(&self, path: &Path, v: &Value) -> Result<Scalar> {
        if let Value::String(s) = v {
            if s.chars().count() > MAX_STRING_CHARS {
                return Err(path.error(format_args!(
                    "a string value may have at most {MAX_STRING_CHARS} characters"
                )));
            }
        }
        match self.attribute {
            Attribute::Trait(name) => match v {
                Value::Number(n) => Ok(Scalar::Number(n.clone())),
                Value::String(s) => Ok(Scalar::Text(s.clone())),
                Value::Bool(b) => Ok(Scalar::Bool(*b)),
                _ => Err(path.error(format_args!(
                    "{} on trait {name:?} takes a number, a string or a boolean",
                    self.operator
                ))),
            },
            Attribute::Column(c) => match (c.kind(), v) {
                (Kind::Text, Value::String(s)) => Ok(Scalar::Text(s.clone())),
                (Kind::Text, _) => Err(path.error(format_args!(
                    "{} is text: the value must be a string",
                    c.name()
                ))),
                (Kind::Bool, Value::Bool(b)) => Ok(Scalar::Bool(*b)),
                (Kind::Bool, _) => Err(path.error(format_args!(
                    "{} is true or false: the value must be a boolean",
                    c.name()
                ))),
                (Kind::Date, Value::String(s)) => parse_date(s).map(Scalar::Date).ok_or_else(|| {
                    path.error(format_args!(
                        "{} is a date: the value must be a date YYYY-MM-DD, not {s:?}",
                        c.name()
                    ))
                }),
                (Kind::Timestamp, Value::String(s)) => parse_date(s)
                    .map(Scalar::Date)
                    .or_else(|| {
                        DateTime::parse_from_rfc3339(s)
                            .ok()
                            .map(|t| Scalar::Instant(t.with_timezone(&Utc)))
                    })
                    .ok_or_else(|| {
                        path.error(format_args!(
                            "{} is a timestamp: the value must be a date YYYY-MM-DD or an RFC 3339 timestamp, not {s:?}",
                            c.name()
                        ))
                    }),
                (Kind::Date, _) => Err(path.error(format_args!(
                    "{} is a date: the value must be a string YYYY-MM-DD",
                    c.name()
                ))),
                (Kind::Timestamp, _) => Err(path.error(format_args!(
                    "{} is a timestamp: the value must be a string, a date YYYY-MM-DD or an RFC 3339 timestamp",
                    c.name()
                ))),
            },
        }
    }

    /// Values of one type, each checked.
    fn list(&self, path: &Path, items: &[Value]) -> Result<Vec<Scalar>> {
        let mut out: Vec<Scalar> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let p = path.index(i);
            let v = self.scalar(&p, item)?;
            if let Some(first) = out.first() {
                if std::mem::discriminant(first) != std::mem::discriminant(&v) {
                    return Err(p.error(format_args!(
                        "every value must have one type: this is a {}, the first is a {}",
                        v.type_name(),
                        first.type_name()
                    )));
                }
            }
            out.push(v);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> (String, String) {
        match Rule::parse("rule", &v) {
            Err(Error::Invalid { field, message, .. }) => (field.unwrap(), message),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn paths_point_into_the_rule() {
        let (field, message) = err(json!({"type": "and", "rules": [
            {"type": "condition", "attribute": "a", "operator": "=", "value": 1},
            {"type": "condition", "attribute": "a", "operator": "≥", "value": 1},
        ]}));
        assert_eq!(field, "rule.rules[1].operator");
        assert!(
            message.starts_with("rule.rules[1].operator: \"≥\" is not an operator"),
            "{message}"
        );
    }

    #[test]
    fn depth_and_size_are_limited() {
        let mut r = json!({"type": "condition", "attribute": "a", "operator": "exists"});
        for _ in 0..MAX_DEPTH - 1 {
            r = json!({"type": "not", "rule": r});
        }
        assert!(Rule::parse("rule", &r).is_ok());
        let (field, _) = err(json!({"type": "not", "rule": r}));
        assert!(field.ends_with(".rule"), "{field}");

        let c = json!({"type": "condition", "attribute": "a", "operator": "exists"});
        let ok = json!({"type": "or", "rules": vec![c.clone(); MAX_CONDITIONS]});
        assert_eq!(
            Rule::parse("rule", &ok).unwrap().conditions(),
            MAX_CONDITIONS
        );
        let (field, message) = err(json!({"type": "or", "rules": vec![c; MAX_CONDITIONS + 1]}));
        assert_eq!(field, format!("rule.rules[{MAX_CONDITIONS}]"));
        assert!(message.contains("at most 200 conditions"), "{message}");
    }
}
