//! Property tests of the rule engine: random valid rules over random people compile and run on
//! PostgreSQL, and what a refresh puts in the segment equals an in-memory evaluation of the same
//! rule written here from the documented semantics; random malformed rules are refused with a
//! path into the rule, never a panic or a database error.

use std::collections::BTreeSet;

use audience_sync::error::Error;
use audience_sync::segment::{self, Rule};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::support::{self, TestApp};

const CASES: u32 = 64;

const TRAITS: &[&str] = &["n", "s", "b", "tags", "d", "never_set"];
const STRINGS: &[&str] = &[
    "pro",
    "Pro",
    "free",
    "vip",
    "a b",
    "5",
    "",
    "2024-01-01",
    "Ünï",
    "p",
    "Pr",
    "fr",
    "v",
];
const COUNTRIES: &[&str] = &["US", "DE", "us", "FR"];
const CITIES: &[&str] = &["San Francisco", "Santa Cruz", "Berlin", "", "Ünïcode"];
const EMAILS: &[&str] = &["a@x.com", "b@y.org", "Ann@Example.COM"];
const TEXT_VALUES: &[&str] = &[
    "US",
    "us",
    "DE",
    "FR",
    "San",
    "Santa Cruz",
    "Berlin",
    "B",
    "an",
    "Ü",
    "a@x.com",
    "@",
    "Ann",
    "z",
    "",
];

/// The clock the generated data is relative to, read from the database once.
#[derive(Debug, Clone, Copy)]
struct Clock {
    today: NaiveDate,
    now: DateTime<Utc>,
}

fn day(c: Clock, days_ago: i64) -> String {
    (c.today - Duration::days(days_ago)).to_string()
}

// ---- people ----

#[derive(Debug, Clone)]
struct GenPerson {
    country: Option<String>,
    city: Option<String>,
    email: Option<String>,
    dob_days_ago: Option<i64>,
    created_days_ago: i64,
    opt_out: bool,
    attributes: Map<String, Value>,
}

fn number() -> BoxedStrategy<Value> {
    prop_oneof![
        (-3i64..15).prop_map(|n| json!(n)),
        (-6i32..30).prop_map(|h| json!(h as f64 / 2.0)),
    ]
    .boxed()
}

fn string() -> BoxedStrategy<Value> {
    select(STRINGS).prop_map(|s| json!(s)).boxed()
}

fn scalar() -> BoxedStrategy<Value> {
    prop_oneof![number(), string(), any::<bool>().prop_map(|b| json!(b))].boxed()
}

fn trait_value(c: Clock) -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        scalar(),
        scalar(),
        prop::collection::vec(scalar(), 0..4).prop_map(Value::Array),
        (-2i64..20, any::<bool>()).prop_map(move |(k, ts)| {
            let d = day(c, k);
            json!(if ts { format!("{d}T10:00:00Z") } else { d })
        }),
        Just(json!({"x": 1})),
    ]
    .boxed()
}

fn person(c: Clock) -> impl Strategy<Value = GenPerson> {
    (
        prop::option::of(select(COUNTRIES)),
        prop::option::of(select(CITIES)),
        prop::option::of(select(EMAILS)),
        prop::option::of(-2i64..20),
        0i64..20,
        any::<bool>(),
        prop::collection::btree_map(select(TRAITS), trait_value(c), 0..5),
    )
        .prop_map(
            |(country, city, email, dob_days_ago, created_days_ago, opt_out, attrs)| GenPerson {
                country: country.map(str::to_string),
                city: city.map(str::to_string),
                email: email.map(str::to_string),
                dob_days_ago,
                created_days_ago,
                opt_out,
                attributes: attrs
                    .into_iter()
                    .filter(|(k, _)| *k != "never_set")
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            },
        )
}

// ---- rules ----

fn cond(attribute: &str, operator: &str, value: Value) -> Value {
    let mut c = json!({"type": "condition", "attribute": attribute, "operator": operator});
    if !value.is_null() {
        c["value"] = value;
    }
    c
}

fn sorted_pair(a: Value, b: Value) -> Value {
    let le = match (&a, &b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() <= y.as_f64(),
        (Value::String(x), Value::String(y)) => x <= y,
        _ => true,
    };
    if le {
        json!([a, b])
    } else {
        json!([b, a])
    }
}

fn nonempty(values: &'static [&'static str]) -> BoxedStrategy<Value> {
    select(values)
        .prop_filter("non-empty", |s| !s.is_empty())
        .prop_map(|s| json!(s))
        .boxed()
}

/// (operator, value) valid for a trait.
fn trait_test(c: Clock) -> BoxedStrategy<(&'static str, Value)> {
    prop_oneof![
        (select(&["=", "!="][..]), scalar()),
        (
            select(&[">", ">=", "<", "<="][..]),
            prop_oneof![number(), string()]
        ),
        (
            select(&["in", "not_in"][..]),
            prop_oneof![
                prop::collection::vec(number(), 1..4),
                prop::collection::vec(string(), 1..4),
                prop::collection::vec(any::<bool>().prop_map(|b| json!(b)), 1..3),
            ]
            .prop_map(Value::Array)
        ),
        prop_oneof![(number(), number()), (string(), string())]
            .prop_map(|(a, b)| ("between", sorted_pair(a, b))),
        prop_oneof![
            nonempty(STRINGS),
            number(),
            any::<bool>().prop_map(|b| json!(b))
        ]
        .prop_map(|v| ("contains", v)),
        nonempty(STRINGS).prop_map(|v| ("starts_with", v)),
        select(&["exists", "not_exists"][..]).prop_map(|op| (op, Value::Null)),
        (1i64..20).prop_map(|n| ("within_last_days", json!(n))),
        (-2i64..20).prop_map(move |k| (">=", json!(day(c, k)))),
    ]
    .boxed()
}

fn text_test() -> BoxedStrategy<(&'static str, Value)> {
    let text = || select(TEXT_VALUES).prop_map(|s| json!(s));
    prop_oneof![
        (select(&["=", "!=", ">", ">=", "<", "<="][..]), text()),
        (
            select(&["in", "not_in"][..]),
            prop::collection::vec(text(), 1..4).prop_map(Value::Array)
        ),
        (text(), text()).prop_map(|(a, b)| ("between", sorted_pair(a, b))),
        (
            select(&["contains", "starts_with"][..]),
            nonempty(TEXT_VALUES)
        ),
        select(&["exists", "not_exists"][..]).prop_map(|op| (op, Value::Null)),
    ]
    .boxed()
}

fn date_test(c: Clock) -> BoxedStrategy<(&'static str, Value)> {
    let date = move || (-2i64..20).prop_map(move |k| json!(day(c, k)));
    prop_oneof![
        (select(&["=", "!=", ">", ">=", "<", "<="][..]), date()),
        (
            select(&["in", "not_in"][..]),
            prop::collection::vec(date(), 1..4).prop_map(Value::Array)
        ),
        (-2i64..20, 0i64..10)
            .prop_map(move |(k, span)| ("between", json!([day(c, k + span), day(c, k)]))),
        select(&["exists", "not_exists"][..]).prop_map(|op| (op, Value::Null)),
        (1i64..20).prop_map(|n| ("within_last_days", json!(n))),
    ]
    .boxed()
}

fn timestamp_test(c: Clock) -> BoxedStrategy<(&'static str, Value)> {
    let instant = move |k: i64, hours: i64| {
        json!((c.now - Duration::days(k) - Duration::hours(hours)).to_rfc3339())
    };
    prop_oneof![
        date_test(c).prop_filter("timestamps have no NULLs", |(op, _)| !op
            .ends_with("exists")),
        (
            select(&["=", "!=", ">", ">=", "<", "<="][..]),
            0i64..20,
            0i64..24
        )
            .prop_map(move |(op, k, h)| (op, instant(k, h))),
        (0i64..20, 1i64..200)
            .prop_map(move |(k, h)| ("between", json!([instant(k, h), instant(k, 0)]))),
    ]
    .boxed()
}

fn bool_test() -> BoxedStrategy<(&'static str, Value)> {
    prop_oneof![
        (
            select(&["=", "!="][..]),
            any::<bool>().prop_map(|b| json!(b))
        ),
        prop::collection::vec(any::<bool>().prop_map(|b| json!(b)), 1..3)
            .prop_map(|v| ("in", Value::Array(v))),
        select(&["exists", "not_exists"][..]).prop_map(|op| (op, Value::Null)),
    ]
    .boxed()
}

fn condition(c: Clock) -> BoxedStrategy<Value> {
    prop_oneof![
        3 => (select(TRAITS), trait_test(c)).prop_map(|(a, (op, v))| cond(a, op, v)),
        2 => (select(&["country", "city", "email"][..]), text_test())
            .prop_map(|(a, (op, v))| cond(a, op, v)),
        1 => date_test(c).prop_map(|(op, v)| cond("date_of_birth", op, v)),
        1 => timestamp_test(c).prop_map(|(op, v)| cond("created_at", op, v)),
        1 => bool_test().prop_map(|(op, v)| cond("marketing_opt_out", op, v)),
    ]
    .boxed()
}

fn rule(c: Clock) -> impl Strategy<Value = Value> {
    condition(c).prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4)
                .prop_map(|rules| json!({"type": "and", "rules": rules})),
            prop::collection::vec(inner.clone(), 1..4)
                .prop_map(|rules| json!({"type": "or", "rules": rules})),
            inner.prop_map(|r| json!({"type": "not", "rule": r})),
        ]
    })
}

// ---- the in-memory evaluation: the documented semantics, written independently ----

#[derive(Debug)]
struct Stored {
    id: Uuid,
    country: Option<String>,
    city: Option<String>,
    email: Option<String>,
    date_of_birth: Option<NaiveDate>,
    created_at: DateTime<Utc>,
    marketing_opt_out: bool,
    attributes: Value,
}

fn ordered<T: PartialOrd>(a: &T, op: &str, b: &T) -> bool {
    match op {
        "=" => a == b,
        "!=" => a != b,
        ">" => a > b,
        ">=" => a >= b,
        "<" => a < b,
        "<=" => a <= b,
        other => panic!("not a comparison: {other}"),
    }
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect()
}

fn eval(rule: &Value, p: &Stored, clock: Clock) -> bool {
    match rule["type"].as_str().unwrap() {
        "and" => rule["rules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| eval(r, p, clock)),
        "or" => rule["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| eval(r, p, clock)),
        "not" => !eval(&rule["rule"], p, clock),
        _ => {
            let op = rule["operator"].as_str().unwrap();
            let v = &rule["value"];
            match rule["attribute"].as_str().unwrap() {
                "country" => text(p.country.as_deref(), op, v),
                "city" => text(p.city.as_deref(), op, v),
                "email" => text(p.email.as_deref(), op, v),
                "date_of_birth" => date(p.date_of_birth, op, v, clock),
                "created_at" => timestamp(p.created_at, op, v, clock),
                "marketing_opt_out" => boolean(p.marketing_opt_out, op, v),
                key => json_trait(p.attributes.get(key).filter(|x| !x.is_null()), op, v, clock),
            }
        }
    }
}

fn text(x: Option<&str>, op: &str, v: &Value) -> bool {
    match (op, x) {
        ("exists", x) => x.is_some(),
        ("not_exists", x) => x.is_none(),
        (_, None) => false,
        ("in", Some(x)) => strs(v).contains(&x),
        ("not_in", Some(x)) => !strs(v).contains(&x),
        ("between", Some(x)) => {
            let b = strs(v);
            b[0] <= x && x <= b[1]
        }
        ("contains", Some(x)) => x.contains(v.as_str().unwrap()),
        ("starts_with", Some(x)) => x.starts_with(v.as_str().unwrap()),
        (op, Some(x)) => ordered(&x, op, &v.as_str().unwrap()),
    }
}

fn parse_day(v: &Value) -> NaiveDate {
    v.as_str().unwrap().parse().unwrap()
}

fn date(x: Option<NaiveDate>, op: &str, v: &Value, c: Clock) -> bool {
    match (op, x) {
        ("exists", x) => x.is_some(),
        ("not_exists", x) => x.is_none(),
        (_, None) => false,
        ("in", Some(x)) => v.as_array().unwrap().iter().any(|d| parse_day(d) == x),
        ("not_in", Some(x)) => v.as_array().unwrap().iter().all(|d| parse_day(d) != x),
        ("between", Some(x)) => parse_day(&v[0]) <= x && x <= parse_day(&v[1]),
        ("within_last_days", Some(x)) => {
            c.today - Duration::days(v.as_i64().unwrap()) <= x && x <= c.today
        }
        (op, Some(x)) => ordered(&x, op, &parse_day(v)),
    }
}

fn timestamp(t: DateTime<Utc>, op: &str, v: &Value, c: Clock) -> bool {
    if op == "within_last_days" {
        return c.now - Duration::days(v.as_i64().unwrap()) <= t && t <= c.now;
    }
    let first = if v.is_array() { &v[0] } else { v };
    let is_day = first.as_str().unwrap().len() == 10;
    if is_day {
        // A day compares the timestamp's UTC day.
        return date(Some(t.date_naive()), op, v, c);
    }
    let at = |x: &Value| x.as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
    match op {
        "in" => v.as_array().unwrap().iter().any(|x| at(x) == t),
        "not_in" => v.as_array().unwrap().iter().all(|x| at(x) != t),
        "between" => at(&v[0]) <= t && t <= at(&v[1]),
        op => ordered(&t, op, &at(v)),
    }
}

fn boolean(x: bool, op: &str, v: &Value) -> bool {
    match op {
        "exists" => true,
        "not_exists" => false,
        "in" => v.as_array().unwrap().contains(&json!(x)),
        op => ordered(&x, op, &v.as_bool().unwrap()),
    }
}

fn same_type(a: &Value, b: &Value) -> bool {
    matches!(
        (a, b),
        (Value::Number(_), Value::Number(_))
            | (Value::String(_), Value::String(_))
            | (Value::Bool(_), Value::Bool(_))
    )
}

/// Equal as typed JSON scalars: numbers by value (7 = 7.0).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => same_type(a, b) && a == b,
    }
}

fn is_iso_day_prefix(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10
        && b[..10].iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

fn json_trait(x: Option<&Value>, op: &str, v: &Value, c: Clock) -> bool {
    let Some(x) = x else {
        return op == "not_exists";
    };
    match op {
        "exists" => true,
        "not_exists" => false,
        "=" => json_eq(x, v),
        "!=" => same_type(x, v) && !json_eq(x, v),
        "in" => v.as_array().unwrap().iter().any(|e| json_eq(x, e)),
        "not_in" => {
            let list = v.as_array().unwrap();
            same_type(x, &list[0]) && !list.iter().any(|e| json_eq(x, e))
        }
        "between" => match (x, &v[0], &v[1]) {
            (Value::Number(x), Value::Number(lo), Value::Number(hi)) => {
                lo.as_f64() <= x.as_f64() && x.as_f64() <= hi.as_f64()
            }
            (Value::String(x), Value::String(lo), Value::String(hi)) => lo <= x && x <= hi,
            _ => false,
        },
        "contains" => {
            let element = x
                .as_array()
                .is_some_and(|items| items.iter().any(|e| json_eq(e, v)));
            let substring = match (x, v) {
                (Value::String(x), Value::String(s)) => x.contains(s.as_str()),
                _ => false,
            };
            element || substring
        }
        "starts_with" => x
            .as_str()
            .is_some_and(|x| x.starts_with(v.as_str().unwrap())),
        "within_last_days" => x.as_str().is_some_and(|s| {
            let from = day(c, v.as_i64().unwrap());
            let to = day(c, 0);
            is_iso_day_prefix(s) && from.as_str() <= &s[..10] && &s[..10] <= to.as_str()
        }),
        op => match (x, v) {
            (Value::Number(a), Value::Number(b)) => {
                ordered(&a.as_f64().unwrap(), op, &b.as_f64().unwrap())
            }
            (Value::String(a), Value::String(b)) => ordered(a, op, b),
            _ => false,
        },
    }
}

// ---- the property ----

async fn load(t: &TestApp, people: &[GenPerson], now: DateTime<Utc>) -> Vec<Stored> {
    t.db.execute("DELETE FROM person", &[]).await.unwrap();
    let col = |f: fn(&GenPerson) -> Option<String>| people.iter().map(f).collect::<Vec<_>>();
    let dob: Vec<Option<i32>> = people
        .iter()
        .map(|p| p.dob_days_ago.map(|d| d as i32))
        .collect();
    let created: Vec<i32> = people.iter().map(|p| p.created_days_ago as i32).collect();
    let opt_out: Vec<bool> = people.iter().map(|p| p.opt_out).collect();
    let attrs: Vec<Value> = people
        .iter()
        .map(|p| Value::Object(p.attributes.clone()))
        .collect();
    // Timestamps sit 12 hours off any whole-day boundary of the run's clock.
    t.db.execute(
        "INSERT INTO person (country, city, email, date_of_birth, created_at, marketing_opt_out, attributes) \
         SELECT u.country, u.city, u.email, current_date - u.dob, \
                $5::timestamptz - make_interval(days => u.created) - interval '12 hours', u.opt_out, u.attrs \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int[], $6::int[], $7::boolean[], $8::jsonb[]) \
              AS u(country, city, email, dob, created, opt_out, attrs)",
        &[
            &col(|p| p.country.clone()),
            &col(|p| p.city.clone()),
            &col(|p| p.email.clone()),
            &dob,
            &now,
            &created,
            &opt_out,
            &attrs,
        ],
    )
    .await
    .unwrap();
    t.db.query(
        "SELECT id, country, city, email, date_of_birth, created_at, marketing_opt_out, attributes \
         FROM person",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| Stored {
        id: r.get(0),
        country: r.get(1),
        city: r.get(2),
        email: r.get(3),
        date_of_birth: r.get(4),
        created_at: r.get(5),
        marketing_opt_out: r.get(6),
        attributes: r.get(7),
    })
    .collect()
}

async fn clock(t: &TestApp) -> Clock {
    let row =
        t.db.query_one("SELECT current_date, now()", &[])
            .await
            .unwrap();
    Clock {
        today: row.get(0),
        now: row.get(1),
    }
}

async fn check(
    t: &TestApp,
    segment: Uuid,
    start: Clock,
    people: &[GenPerson],
    rules: &[Value],
) -> Result<(), TestCaseError> {
    let stored = load(t, people, start.now).await;
    for rule in rules {
        let parsed = Rule::parse("rule", rule)
            .map_err(|e| TestCaseError::fail(format!("a valid rule was refused: {e}: {rule}")))?;
        t.db.execute(
            "UPDATE segment SET rule = $2 WHERE id = $1",
            &[&segment, rule],
        )
        .await
        .unwrap();
        let now = clock(t).await;
        let refreshed = segment::refresh(&t.db, segment)
            .await
            .map_err(|e| TestCaseError::fail(format!("refresh failed: {e:?}: {rule}")))?;
        let in_db: BTreeSet<Uuid> = support::column(
            &t.db,
            "SELECT person_id FROM segment_member WHERE segment_id = $1",
            &[&segment],
        )
        .await
        .into_iter()
        .collect();
        let in_memory: BTreeSet<Uuid> = stored
            .iter()
            .filter(|p| eval(rule, p, now))
            .map(|p| p.id)
            .collect();
        prop_assert_eq!(&in_db, &in_memory, "rule {}", rule);
        prop_assert_eq!(refreshed.member_count as usize, in_memory.len());
        let preview = segment::preview(&t.db, &parsed).await.unwrap();
        prop_assert_eq!(preview.count as usize, in_memory.len());
        let sample: BTreeSet<Uuid> = preview.sample.into_iter().collect();
        prop_assert!(sample.is_subset(&in_memory));
        prop_assert_eq!(sample.len(), in_memory.len().min(10));
    }
    Ok(())
}

#[test]
fn refresh_equals_an_in_memory_evaluation_of_random_rules() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let t = rt.block_on(support::spawn_app());
    let start = rt.block_on(clock(&t));
    let segment: Uuid = rt.block_on(async {
        t.db.query_one(
            "INSERT INTO segment (name) VALUES ('Random rules') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0)
    });
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    // Two rules per case: the second refresh moves members from the first rule's result to the
    // second's (joiners and leavers).
    let strategy = (
        prop::collection::vec(person(start), 0..25),
        rule(start),
        rule(start),
    );
    runner
        .run(&strategy, |(people, first, second)| {
            rt.block_on(check(&t, segment, start, &people, &[first, second]))
        })
        .unwrap();
}

// ---- malformed rules ----

fn junk() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..50).prop_map(|n| json!(n)),
        select(
            &[
                "condition",
                "and",
                "or",
                "not",
                "=",
                "≥",
                "in",
                "between",
                "exists",
                "within_last_days",
                "total_renders",
                "country",
                "created_at",
                "",
                "x",
            ][..]
        )
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                select(
                    &[
                        "type",
                        "attribute",
                        "operator",
                        "value",
                        "rules",
                        "rule",
                        "extra"
                    ][..]
                ),
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

proptest! {
    #![proptest_config(Config { cases: 512, failure_persistence: None, ..Config::default() })]

    #[test]
    fn malformed_rules_are_refused_with_a_path_into_the_rule(v in junk()) {
        match Rule::parse("rule", &v) {
            Ok(rule) => {
                // Whatever parses compiles.
                let w = audience_sync::segment::compile::compile(&rule, 0);
                prop_assert!(!w.sql.is_empty());
            }
            Err(Error::Invalid { field: Some(field), message, .. }) => {
                prop_assert!(field.starts_with("rule"), "{}", field);
                prop_assert!(message.starts_with(&format!("{field}: ")), "{}", message);
            }
            Err(other) => prop_assert!(false, "unexpected error {:?}", other),
        }
    }
}
