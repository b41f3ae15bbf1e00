//! hash_person throughput over 100,000 generated persons: all fields with realistic mixed phone
//! formats, then email only. Prints persons/second besides criterion's own report.
//!
//! cargo bench --bench hashing -- --warm-up-time 1 --measurement-time 3

use std::hint::black_box;
use std::time::Instant;

use audience_sync::destinations::meta::hashing::Hasher;
use audience_sync::identity::PersonFields;
use chrono::NaiveDate;
use criterion::{Criterion, Throughput};

const N: usize = 100_000;

/// Deterministic xorshift, so every run hashes the same persons.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.below(v.len() as u64) as usize]
    }
}

#[derive(Default)]
struct Owned {
    email: Option<String>,
    phone: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    city: Option<String>,
    state: Option<String>,
    zip: Option<String>,
    country: Option<String>,
    date_of_birth: Option<NaiveDate>,
    gender: Option<String>,
}

impl Owned {
    fn view(&self) -> PersonFields<'_> {
        PersonFields {
            email: self.email.as_deref(),
            phone: self.phone.as_deref(),
            first_name: self.first_name.as_deref(),
            last_name: self.last_name.as_deref(),
            city: self.city.as_deref(),
            state: self.state.as_deref(),
            zip: self.zip.as_deref(),
            country: self.country.as_deref(),
            date_of_birth: self.date_of_birth,
            gender: self.gender.as_deref(),
            value: None,
        }
    }
}

const FIRST: &[&str] = &[
    "Mary", " Ann ", "Mary Ann", "Jean-Luc", "Valéry", "JOSÉ", "o'neil", "Zoë", "Liam", "Noah",
];
const LAST: &[&str] = &[
    "Smith",
    "O'Brien",
    "Müller",
    "García López",
    "Nguyen",
    "D'Été",
    "JOHNSON",
    "van der Berg",
];

fn phone(rng: &mut Rng, country: &str) -> String {
    let a = 200 + rng.below(800);
    let b = 200 + rng.below(800);
    let c = rng.below(10_000);
    let m = rng.below(1_000_000);
    match country {
        "US" => match rng.below(100) {
            0..=24 => format!("({a}) {b}-{c:04}"),
            25..=44 => format!("{a}-{b}-{c:04}"),
            45..=59 => format!("+1 {a} {b} {c:04}"),
            60..=69 => format!("1-{a}-{b}-{c:04}"),
            70..=79 => format!("{a}.{b}.{c:04}"),
            80..=94 => format!("{a}{b}{c:04}"),
            95..=97 => format!("{a}-{b}-{c:04} ext. {}", rng.below(999)),
            _ => format!("{b}-{c:04}"), // no area code: absent
        },
        "GB" => match rng.below(4) {
            0 => format!("07700 9{:05}", rng.below(100_000)),
            1 => format!("+44 7700 9{:05}", rng.below(100_000)),
            2 => format!("0044 7700 9{:05}", rng.below(100_000)),
            _ => format!("020 7946 {c:04}"),
        },
        "DE" => match rng.below(3) {
            0 => format!("030 {m:06}1"),
            1 => format!("+49 30 {m:06}1"),
            _ => format!("0171 {m:06}7"),
        },
        "FR" => match rng.below(2) {
            0 => format!(
                "06 {:02} {:02} {:02} {:02}",
                m % 100,
                m / 100 % 100,
                c % 100,
                c / 100
            ),
            _ => format!(
                "+33 6 {:02} {:02} {:02} {:02}",
                m % 100,
                m / 100 % 100,
                c % 100,
                c / 100
            ),
        },
        "IT" => format!("02 {m:06}{}", c % 100),
        "BR" => format!("(11) 9{:04}-{c:04}", m % 10_000),
        _ => format!("+61 4{:02} {:03} {:03}", m % 100, m / 100 % 1000, c % 1000),
    }
}

fn person(rng: &mut Rng, i: usize) -> Owned {
    let country = match rng.below(100) {
        0..=59 => "US",
        60..=74 => "GB",
        75..=82 => "DE",
        83..=89 => "FR",
        90..=94 => "IT",
        95..=97 => "AU",
        _ => "BR",
    };
    let country_raw = match (country, rng.below(4)) {
        ("US", 0) => " us ".to_string(),
        ("US", 1) => "USA".to_string(),
        ("US", 2) => "United States".to_string(),
        (c, _) => c.to_string(),
    };
    let (city, state, zip) = match country {
        "US" => (
            rng.pick(&["San Francisco", "New York", "St. Louis", "Winston-Salem"]),
            rng.pick(&["California", " new york ", "MO", "N.C.", "tx"]),
            format!("{:05}-{:04}", rng.below(100_000), rng.below(10_000)),
        ),
        "GB" => ("London", "", "SW1A 1AA".to_string()),
        "DE" => ("München", "Bayern", format!("{:05}", rng.below(100_000))),
        "FR" => ("Paris", "Île-de-France", "75015".to_string()),
        _ => ("São Paulo", "SP", format!("{:04}", rng.below(10_000))),
    };
    let first = rng.pick(FIRST);
    Owned {
        email: Some(format!(
            " {}.{}{i}@Example.COM ",
            first.trim().replace(' ', ""),
            rng.pick(&["smith", "lee", "kim"])
        )),
        phone: (rng.below(20) != 0).then(|| phone(rng, country)),
        first_name: Some(first.to_string()),
        last_name: Some(rng.pick(LAST).to_string()),
        city: Some(city.to_string()),
        state: (!state.is_empty()).then(|| state.to_string()),
        zip: Some(zip),
        country: Some(country_raw),
        date_of_birth: NaiveDate::from_ymd_opt(
            1940 + rng.below(66) as i32,
            1 + rng.below(12) as u32,
            1 + rng.below(28) as u32,
        ),
        gender: Some(rng.pick(&["M", "female", "F", "male", "x", ""]).to_string()),
    }
}

fn all_fields() -> Vec<Owned> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..N).map(|i| person(&mut rng, i)).collect()
}

fn email_only(all: &[Owned]) -> Vec<Owned> {
    all.iter()
        .map(|p| Owned {
            email: p.email.clone(),
            ..Default::default()
        })
        .collect()
}

fn phone_only(all: &[Owned]) -> Vec<Owned> {
    all.iter()
        .map(|p| Owned {
            phone: p.phone.clone(),
            country: p.country.clone(),
            ..Default::default()
        })
        .collect()
}

fn run(hasher: &mut Hasher, people: &[PersonFields]) -> usize {
    let mut sendable = 0;
    for p in people {
        sendable += black_box(hasher.hash_person(black_box(p))).is_sendable() as usize;
    }
    sendable
}

fn main() {
    let all = all_fields();
    let sets = [
        ("all_fields", all_fields()),
        ("email_only", email_only(&all)),
        ("phone_country_only", phone_only(&all)),
    ];
    let views: Vec<(&str, Vec<PersonFields>)> = sets
        .iter()
        .map(|(name, v)| (*name, v.iter().map(Owned::view).collect()))
        .collect();

    let mut c = Criterion::default().sample_size(10).configure_from_args();
    {
        let mut group = c.benchmark_group("hash_person_100k");
        group.throughput(Throughput::Elements(N as u64));
        for (name, people) in &views {
            let mut hasher = Hasher::new();
            group.bench_function(*name, |b| b.iter(|| run(&mut hasher, people)));
        }
        group.finish();
    }
    c.final_summary();

    // Plain timing, best of 5 passes, for a persons/second figure.
    for (name, people) in &views {
        let mut hasher = Hasher::new();
        let mut sendable = run(&mut hasher, people);
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            sendable = run(&mut hasher, people);
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "{name:>20}: {:>10.0} persons/s ({:.0} ns/person, {sendable} of {N} sendable)",
            N as f64 / best,
            best * 1e9 / N as f64
        );
    }
}
