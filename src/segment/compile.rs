//! A rule compiled to one SQL boolean expression over `person p`.
//!
//! Values only ever travel as bind parameters (`$n`, with an explicit type); column names come
//! only from [`Column::name`]; a trait's name is a bound `text` parameter used as a JSON key.
//!
//! Every condition is false, or NULL (which `WHERE` takes as false), for a person who lacks the
//! attribute or holds a value of another type. `NOT` wraps its operand in `COALESCE(…, false)`,
//! so negation is the exact complement of what its operand selects.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use tokio_postgres::types::ToSql;

use super::rule::{Attribute, CmpOp, Column, Condition, Kind, Rule, Scalar, Test};

pub type Param = Box<dyn ToSql + Sync + Send>;

/// A compiled rule: `sql` is a boolean expression over `person p` whose placeholders are
/// numbered from `first + 1`.
pub struct Where {
    pub sql: String,
    pub params: Vec<Param>,
}

impl Where {
    /// The parameters as `tokio_postgres` takes them, after `before` (the statement's own).
    pub fn params_after<'a>(
        &'a self,
        before: &[&'a (dyn ToSql + Sync)],
    ) -> Vec<&'a (dyn ToSql + Sync)> {
        let mut all = before.to_vec();
        all.extend(
            self.params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync)),
        );
        all
    }
}

/// Compiles `rule`; its placeholders start after the statement's first `first` parameters.
pub fn compile(rule: &Rule, first: usize) -> Where {
    let mut b = Builder {
        params: Vec::new(),
        first,
    };
    let sql = b.rule(rule);
    Where {
        sql,
        params: b.params,
    }
}

struct Builder {
    params: Vec<Param>,
    first: usize,
}

const TEXT_ORDER: &str = " COLLATE \"C\"";

impl Builder {
    fn bind<T: ToSql + Sync + Send + 'static>(&mut self, v: T, cast: &str) -> String {
        self.params.push(Box::new(v));
        format!("${}::{cast}", self.first + self.params.len())
    }

    fn rule(&mut self, rule: &Rule) -> String {
        match rule {
            Rule::Condition(c) => self.condition(c),
            Rule::And(rs) => self.group(rs, " AND "),
            Rule::Or(rs) => self.group(rs, " OR "),
            Rule::Not(r) => format!("NOT COALESCE({}, false)", self.rule(r)),
        }
    }

    fn group(&mut self, rules: &[Rule], joiner: &str) -> String {
        let parts: Vec<String> = rules.iter().map(|r| self.rule(r)).collect();
        format!("({})", parts.join(joiner))
    }

    fn condition(&mut self, c: &Condition) -> String {
        match &c.attribute {
            Attribute::Column(col) => self.column(*col, &c.test),
            Attribute::Trait(name) => self.trait_(name, &c.test),
        }
    }

    // ---- person columns ----

    /// A column value as SQL binds it.
    fn column_value(&mut self, v: &Scalar) -> String {
        match v {
            Scalar::Text(s) => self.bind(s.clone(), "text"),
            Scalar::Bool(b) => self.bind(*b, "boolean"),
            Scalar::Date(d) => self.bind(*d, "date"),
            Scalar::Instant(t) => self.bind(*t, "timestamptz"),
            // Rule parsing gives columns no numbers; a JSON value keeps this total.
            Scalar::Number(_) => self.json(v),
        }
    }

    fn column_list(&mut self, vs: &[Scalar]) -> String {
        match vs.first() {
            Some(Scalar::Bool(_)) => {
                let v: Vec<bool> = vs
                    .iter()
                    .filter_map(|s| match s {
                        Scalar::Bool(b) => Some(*b),
                        _ => None,
                    })
                    .collect();
                self.bind(v, "boolean[]")
            }
            Some(Scalar::Date(_)) => {
                let v: Vec<NaiveDate> = vs
                    .iter()
                    .filter_map(|s| match s {
                        Scalar::Date(d) => Some(*d),
                        _ => None,
                    })
                    .collect();
                self.bind(v, "date[]")
            }
            Some(Scalar::Instant(_)) => {
                let v: Vec<DateTime<Utc>> = vs
                    .iter()
                    .filter_map(|s| match s {
                        Scalar::Instant(t) => Some(*t),
                        _ => None,
                    })
                    .collect();
                self.bind(v, "timestamptz[]")
            }
            _ => {
                let v: Vec<String> = vs
                    .iter()
                    .filter_map(|s| match s {
                        Scalar::Text(t) => Some(t.clone()),
                        _ => None,
                    })
                    .collect();
                self.bind(v, "text[]")
            }
        }
    }

    fn column(&mut self, col: Column, test: &Test) -> String {
        let name = format!("p.{}", col.name());
        let kind = col.kind();
        // A day compared with a timestamp column compares the timestamp's day (UTC).
        let lhs = |v: &Scalar| match (kind, v) {
            (Kind::Timestamp, Scalar::Date(_)) => format!("({name} AT TIME ZONE 'UTC')::date"),
            _ => name.clone(),
        };
        // Text orders byte-wise (as in Rust), whatever the database's collation.
        let ordered = |v: &Scalar| match v {
            Scalar::Text(_) => format!("{}{TEXT_ORDER}", lhs(v)),
            _ => lhs(v),
        };
        match test {
            Test::Compare(op @ (CmpOp::Eq | CmpOp::Ne), v) => {
                let l = lhs(v);
                format!("{l} {} {}", op.sql(), self.column_value(v))
            }
            Test::Compare(op, v) => {
                let l = ordered(v);
                format!("{l} {} {}", op.sql(), self.column_value(v))
            }
            Test::In(vs) => {
                let l = lhs(&vs[0]);
                format!("{l} = ANY({})", self.column_list(vs))
            }
            Test::NotIn(vs) => {
                let l = lhs(&vs[0]);
                format!("{l} <> ALL({})", self.column_list(vs))
            }
            Test::Between(lo, hi) => {
                let l = ordered(lo);
                let lo = self.column_value(lo);
                let hi = self.column_value(hi);
                format!("{l} BETWEEN {lo} AND {hi}")
            }
            Test::Contains(v) => format!("strpos({name}, {}) > 0", self.column_value(v)),
            Test::StartsWith(s) => format!("starts_with({name}, {})", self.bind(s.clone(), "text")),
            Test::Exists => format!("{name} IS NOT NULL"),
            Test::NotExists => format!("{name} IS NULL"),
            Test::WithinLastDays(days) => {
                let n = self.bind(*days, "int");
                if kind == Kind::Timestamp {
                    format!("{name} BETWEEN now() - make_interval(days => {n}) AND now()")
                } else {
                    format!("{name} BETWEEN current_date - {n} AND current_date")
                }
            }
        }
    }

    // ---- traits: keys of person.attributes ----

    fn json(&mut self, v: &Scalar) -> String {
        self.bind(scalar_json(v), "jsonb")
    }

    fn trait_(&mut self, name: &str, test: &Test) -> String {
        let k = self.bind(name.to_string(), "text");
        let a = format!("p.attributes -> {k}");
        let t = format!("(p.attributes ->> {k})");
        let is = |v: &Scalar| {
            let ty = match v {
                Scalar::Number(_) => "number",
                Scalar::Bool(_) => "boolean",
                _ => "string",
            };
            format!("jsonb_typeof({a}) = '{ty}'")
        };
        match test {
            // Containment: exact and typed, and served by the GIN index on attributes.
            Test::Compare(CmpOp::Eq, v) => {
                format!("p.attributes @> jsonb_build_object({k}, {})", self.json(v))
            }
            Test::Compare(op, v @ Scalar::Text(s)) if *op != CmpOp::Ne => {
                let guard = is(v);
                let s = self.bind(s.clone(), "text");
                format!("({guard} AND {t}{TEXT_ORDER} {} {s})", op.sql())
            }
            // jsonb compares two numbers as numbers (exactly), two booleans as booleans.
            Test::Compare(op, v) => {
                let guard = is(v);
                format!("({guard} AND {a} {} {})", op.sql(), self.json(v))
            }
            Test::In(vs) => {
                let list: Vec<Value> = vs.iter().map(scalar_json).collect();
                format!("{a} = ANY({})", self.bind(list, "jsonb[]"))
            }
            Test::NotIn(vs) => {
                let guard = is(&vs[0]);
                let list: Vec<Value> = vs.iter().map(scalar_json).collect();
                format!("({guard} AND {a} <> ALL({}))", self.bind(list, "jsonb[]"))
            }
            Test::Between(lo @ Scalar::Text(l), Scalar::Text(h)) => {
                let guard = is(lo);
                let l = self.bind(l.clone(), "text");
                let h = self.bind(h.clone(), "text");
                format!("({guard} AND {t}{TEXT_ORDER} BETWEEN {l} AND {h})")
            }
            Test::Between(lo, hi) => {
                let guard = is(lo);
                let l = self.json(lo);
                let h = self.json(hi);
                format!("({guard} AND {a} BETWEEN {l} AND {h})")
            }
            Test::Contains(v) => {
                let element = format!(
                    "p.attributes @> jsonb_build_object({k}, jsonb_build_array({}))",
                    self.json(v)
                );
                match v {
                    Scalar::Text(s) => {
                        let s = self.bind(s.clone(), "text");
                        format!(
                            "({element} OR (jsonb_typeof({a}) = 'string' AND strpos({t}, {s}) > 0))"
                        )
                    }
                    _ => element,
                }
            }
            Test::StartsWith(s) => {
                let s = self.bind(s.clone(), "text");
                format!("(jsonb_typeof({a}) = 'string' AND starts_with({t}, {s}))")
            }
            Test::Exists => format!("(p.attributes ? {k} AND jsonb_typeof({a}) <> 'null')"),
            Test::NotExists => format!("NOT (p.attributes ? {k} AND jsonb_typeof({a}) <> 'null')"),
            Test::WithinLastDays(days) => {
                // The day of an ISO date or timestamp string, compared as text (YYYY-MM-DD orders
                // as the days do), so a string that is no date is simply not matched.
                let n = self.bind(*days, "int");
                format!(
                    "(jsonb_typeof({a}) = 'string' AND {t} ~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}' \
                     AND left({t}, 10){TEXT_ORDER} BETWEEN to_char(current_date - {n}, 'YYYY-MM-DD') \
                     AND to_char(current_date, 'YYYY-MM-DD'))"
                )
            }
        }
    }
}

fn scalar_json(v: &Scalar) -> Value {
    match v {
        Scalar::Number(n) => Value::Number(n.clone()),
        Scalar::Text(s) => Value::String(s.clone()),
        Scalar::Bool(b) => Value::Bool(*b),
        Scalar::Date(d) => Value::String(d.to_string()),
        Scalar::Instant(t) => Value::String(t.to_rfc3339()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_and_trait_names_are_parameters_never_sql() {
        let rule = Rule::parse(
            "rule",
            &json!({"type": "and", "rules": [
                {"type": "condition", "attribute": "x'); DROP TABLE person; --", "operator": "=", "value": "'; --"},
                {"type": "condition", "attribute": "country", "operator": "in", "value": ["US", "x' OR 1=1"]},
            ]}),
        )
        .unwrap();
        let w = compile(&rule, 1);
        assert!(!w.sql.contains("DROP") && !w.sql.contains("--") && !w.sql.contains("1=1"));
        assert_eq!(w.params.len(), 3);
        assert!(
            w.sql.contains("$2::text") && w.sql.contains("$4::text[]"),
            "{}",
            w.sql
        );
    }
}
