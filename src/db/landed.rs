//! Landed migrations are append-only. `migrations/CHECKSUMS` lists every migration that landed,
//! in order, as `sha256sum` prints it; the test here fails when a listed file changed or
//! disappeared, when a migration is not listed, or when the versions do not strictly increase.
//!
//! A database runs each migration once: editing a landed one would leave databases that ran the
//! old text and fresh ones with different schemas (and refinery refuses to migrate a database
//! whose applied migrations differ from the files).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The list, in `migrations/`.
const LIST: &str = "CHECKSUMS";

/// One line of the list.
struct Listed {
    line: usize,
    sha256: String,
    name: String,
}

/// A migration file name as refinery reads it: `V{version}__{name}.sql` (or `U…`, or `.rs`).
struct MigrationName<'a> {
    version: i32,
    name: &'a str,
}

fn migrations_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations")
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    hex::encode(digest)
}

/// Refinery's pattern, `^[U|V](\d+(?:\.\d+)?)__(\w+)\.(rs|sql)$`, with the version parsed as
/// refinery parses it (an `i32`). `None` for a file refinery would skip (or reject).
fn parse_migration_name(path: &str) -> Option<MigrationName<'_>> {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file
        .strip_suffix(".sql")
        .or_else(|| file.strip_suffix(".rs"))?;
    let rest = stem.strip_prefix(['V', 'U'])?;
    let (version, name) = rest.split_once("__")?;
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    Some(MigrationName {
        version: version.parse().ok()?,
        name,
    })
}

/// The lines of the list; malformed ones are reported as problems.
fn parse_list(text: &str, problems: &mut Vec<String>) -> Vec<Listed> {
    let mut listed = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        // `sha256sum` prints `<hash>  <name>` (text mode) or `<hash> *<name>` (binary mode).
        let parsed = line
            .split_once("  ")
            .or_else(|| line.split_once(" *"))
            .filter(|(hash, name)| {
                hash.len() == 64
                    && hash.bytes().all(|b| b.is_ascii_hexdigit())
                    && !name.is_empty()
                    && name.trim() == *name
            });
        match parsed {
            Some((hash, name)) => listed.push(Listed {
                line: index + 1,
                sha256: hash.to_ascii_lowercase(),
                name: name.to_string(),
            }),
            None => problems.push(format!(
                "line {} of migrations/{LIST} is not `<sha256>  <file name>` as sha256sum prints \
                 it (the name relative to migrations/): {line:?}. Write it with \
                 `cd migrations && sha256sum <file> >> {LIST}` (the previous line must end with a \
                 newline).",
                index + 1
            )),
        }
    }
    listed
}

/// The files under `dir` (recursively, as refinery finds migrations), relative to it with `/`
/// separators; the list itself and dotfiles (`.gitattributes`) are not migrations.
fn files_on_disk(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
                continue;
            }
            let relative = path
                .strip_prefix(root)
                .expect("under the migrations folder")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            if relative != LIST {
                out.push(relative);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Everything wrong with `dir` against its list; empty when the landed migrations are intact.
fn problems(dir: &Path) -> (Vec<String>, i32) {
    let mut problems = Vec::new();
    let list_path = dir.join(LIST);
    let text = match std::fs::read_to_string(&list_path) {
        Ok(text) => text,
        Err(e) => {
            problems.push(format!(
                "migrations/{LIST} cannot be read ({e}): it lists every landed migration; restore \
                 it with `git checkout -- migrations/{LIST}`."
            ));
            String::new()
        }
    };
    let listed = parse_list(&text, &mut problems);

    let mut names = BTreeSet::new();
    let mut last: Option<(i32, &str)> = None;
    for entry in &listed {
        if !names.insert(entry.name.as_str()) {
            problems.push(format!(
                "migrations/{LIST} lists {} twice (line {}): one line per migration.",
                entry.name, entry.line
            ));
            continue;
        }
        match parse_migration_name(&entry.name) {
            None => problems.push(format!(
                "migrations/{LIST} line {}: {} is not named as refinery wants a migration, \
                 `V<version>__<name>.sql` (letters, digits, `_`): refinery would skip it.",
                entry.line, entry.name
            )),
            Some(parsed) => {
                if let Some((previous, previous_name)) = last {
                    if parsed.version <= previous {
                        problems.push(format!(
                            "migrations/{LIST} line {}: {} (version {}) comes after {} (version \
                             {}): versions must strictly increase down the list, without \
                             duplicates. A new migration takes the next number after the last \
                             one listed, and its line goes at the end.",
                            entry.line, entry.name, parsed.version, previous_name, previous
                        ));
                    }
                }
                if last.is_none_or(|(previous, _)| parsed.version > previous) {
                    last = Some((parsed.version, entry.name.as_str()));
                }
            }
        }
        match std::fs::read(dir.join(&entry.name)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => problems.push(format!(
                "migrations/{} is listed in migrations/{LIST} but missing. A landed migration is \
                 never deleted or renamed (databases have run it under that name): restore it \
                 with `git checkout -- migrations/{}`.",
                entry.name, entry.name
            )),
            Err(e) => problems.push(format!("reading migrations/{}: {e}", entry.name)),
            Ok(bytes) => {
                let actual = sha256_hex(&bytes);
                if actual != entry.sha256 {
                    problems.push(format!(
                        "migrations/{} changed after it landed (migrations/{LIST} has {}, the \
                         file now hashes to {actual}). Restore it with `git checkout -- \
                         migrations/{}` and put the change in a new migration instead.",
                        entry.name, entry.sha256, entry.name
                    ));
                }
            }
        }
    }
    let next = last.map_or(1, |(version, _)| version + 1);

    for file in files_on_disk(dir) {
        if names.contains(file.as_str()) {
            continue;
        }
        let version = parse_migration_name(&file).map(|m| m.version);
        let mut problem = format!("migrations/{file} is not listed in migrations/{LIST}. ");
        match version {
            Some(version) if version >= next => {
                let _ = write!(
                    problem,
                    "A new migration is appended to the list in the same commit that adds it: \
                     `cd migrations && sha256sum {file} >> {LIST}`."
                );
            }
            Some(_) => {
                let _ = write!(
                    problem,
                    "Its version is not above the last one listed: rename it to \
                     V{next}__<name>.sql, then append its line in the same commit: \
                     `cd migrations && sha256sum V{next}__<name>.sql >> {LIST}`. (If it is a \
                     landed migration under a new name, give it back its old name.)"
                );
            }
            None => {
                let _ = write!(
                    problem,
                    "migrations/ holds only migrations, named V<version>__<name>.sql (refinery \
                     skips other names), and the list: name it V{next}__<name>.sql and append \
                     its line (`cd migrations && sha256sum V{next}__<name>.sql >> {LIST}`), or \
                     move it out of migrations/."
                );
            }
        }
        problems.push(problem);
    }
    (problems, next)
}

#[test]
fn landed_migrations_are_append_only() {
    let (problems, next) = problems(&migrations_dir());
    if problems.is_empty() {
        return;
    }
    let mut message = String::from("migrations/ does not match migrations/CHECKSUMS:\n");
    for problem in &problems {
        let _ = write!(message, "\n  - {problem}\n");
    }
    let _ = write!(
        message,
        "\nLanded migrations are append-only: a database runs each migration once, so an edited, \
         renamed or removed migration leaves existing and fresh databases with different schemas \
         (and refinery refuses to migrate a database whose applied migrations differ from the \
         files). To change the schema, add migrations/V{next}__<what>.sql and, in the same \
         commit, append its line to the list: `cd migrations && sha256sum V{next}__<what>.sql \
         >> {LIST}`. See \"Migrations\" in README.md."
    );
    panic!("{message}");
}

/// The migrations refinery embeds (and applies) are exactly the listed ones.
#[test]
fn embedded_migrations_are_the_listed_ones() {
    let dir = migrations_dir();
    let text = std::fs::read_to_string(dir.join(LIST)).unwrap_or_default();
    let listed: BTreeSet<(i32, String)> = parse_list(&text, &mut Vec::new())
        .iter()
        .filter_map(|l| parse_migration_name(&l.name).map(|m| (m.version, m.name.to_string())))
        .collect();
    let embedded: BTreeSet<(i32, String)> = super::embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| (m.version(), m.name().to_string()))
        .collect();
    assert_eq!(
        embedded, listed,
        "the migrations refinery embeds (left) are not those migrations/{LIST} lists (right): a \
         new migration is appended to the list in the same commit, `cd migrations && sha256sum \
         V<version>__<name>.sql >> {LIST}` (landed_migrations_are_append_only tells more)"
    );
}

/// The checker itself, on scratch folders.
mod checker {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn names_are_read_as_refinery_reads_them() {
        let m = parse_migration_name("V12__add_index.sql").unwrap();
        assert_eq!((m.version, m.name), (12, "add_index"));
        assert_eq!(parse_migration_name("U3__x.rs").unwrap().version, 3);
        assert_eq!(parse_migration_name("sub/V01__x.sql").unwrap().version, 1);
        for bad in [
            "V2_x.sql",
            "v2__x.sql",
            "V__x.sql",
            "V2__.sql",
            "V2__x.sql.orig",
            "V2__a-b.sql",
            "README.md",
            "V1.5__x.sql",
        ] {
            assert!(parse_migration_name(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn list_lines_are_sha256sum_output() {
        let hash = "ab".repeat(32);
        let mut problems = Vec::new();
        let listed = parse_list(
            &format!("{hash}  V1__a.sql\n\n{hash} *V2__b.sql\n{hash} V3__c.sql\nnonsense\n"),
            &mut problems,
        );
        let names: Vec<_> = listed.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["V1__a.sql", "V2__b.sql"]);
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    /// A scratch copy of a migrations folder, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(files: &[(&str, &str)], list: &[&str]) -> Scratch {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "audience-sync-landed-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let mut text = String::new();
            for (name, content) in files {
                std::fs::write(dir.join(name), content).unwrap();
                if list.contains(name) {
                    text.push_str(&format!("{}  {name}\n", sha256_hex(content.as_bytes())));
                }
            }
            std::fs::write(dir.join(LIST), text).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn every_kind_of_drift_is_reported() {
        let all = ["V1__a.sql", "V2__b.sql"];
        let ok = Scratch::new(&[("V1__a.sql", "a"), ("V2__b.sql", "b")], &all);
        assert!(problems(&ok.0).0.is_empty(), "{:?}", problems(&ok.0).0);

        let edited = Scratch::new(&[("V1__a.sql", "a"), ("V2__b.sql", "b")], &all);
        std::fs::write(edited.0.join("V1__a.sql"), "a, edited").unwrap();
        let (found, next) = problems(&edited.0);
        assert_eq!(next, 3);
        assert!(
            found.len() == 1 && found[0].contains("V1__a.sql changed after it landed"),
            "{found:?}"
        );

        let removed = Scratch::new(&[("V1__a.sql", "a"), ("V2__b.sql", "b")], &all);
        std::fs::remove_file(removed.0.join("V2__b.sql")).unwrap();
        let (found, _) = problems(&removed.0);
        assert!(
            found.len() == 1
                && found[0].contains("V2__b.sql is listed")
                && found[0].contains("missing"),
            "{found:?}"
        );

        let unlisted = Scratch::new(&[("V1__a.sql", "a"), ("V2__b.sql", "b")], &["V1__a.sql"]);
        let (found, _) = problems(&unlisted.0);
        assert!(
            found.len() == 1
                && found[0].contains("V2__b.sql is not listed")
                && found[0].contains("sha256sum V2__b.sql >> CHECKSUMS"),
            "{found:?}"
        );

        let stray = Scratch::new(&[("V1__a.sql", "a"), ("V2_b.sql", "b")], &["V1__a.sql"]);
        let (found, _) = problems(&stray.0);
        assert!(
            found.len() == 1 && found[0].contains("V2_b.sql is not listed"),
            "{found:?}"
        );

        let unordered = Scratch::new(
            &[("V1__a.sql", "a"), ("V3__c.sql", "c"), ("V2__b.sql", "b")],
            &["V1__a.sql", "V3__c.sql", "V2__b.sql"],
        );
        let (found, next) = problems(&unordered.0);
        assert_eq!(next, 4);
        assert!(
            found.len() == 1 && found[0].contains("versions must strictly increase"),
            "{found:?}"
        );

        let duplicate = Scratch::new(
            &[("V1__a.sql", "a"), ("V1__b.sql", "b")],
            &["V1__a.sql", "V1__b.sql"],
        );
        let (found, _) = problems(&duplicate.0);
        assert!(
            found.len() == 1 && found[0].contains("versions must strictly increase"),
            "{found:?}"
        );
    }
}
