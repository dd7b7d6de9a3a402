//! Property tests of every parser that reads outside input: durations and
//! sizes (config, command line), names, tag file names, the receiver's
//! listing and replies, and the PackageList `age --local` reads. (The
//! known_hosts parser is private: its properties live in its module.)
//!
//! Each parser gets arbitrary input (any characters, any bytes) and
//! near-valid input (built from its grammar, then mutated). Properties: it
//! never panics or overflows; a rejection is an error whose message is one
//! non-empty line; what a writer produces reads back as written; and where
//! the grammar is simple, an oracle says exactly what must be accepted.
//!
//! 10,000 cases per property by default; `PROPTEST_CASES` overrides.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;
use proptest::sample::{select, Index};

use blat::archive::{Alias, Name, PackageVersion, SourceEntry};
use blat::config::units::{human_duration, parse_duration, parse_size};
use blat::current::CurrentSet;
use blat::packagelist::{parse_at as parse_packagelist, text as packagelist_text};
use blat::tags::{parse_tag, tag_name};
use blat::target::receiver::{
    parse_delete_reply, parse_df_reply, parse_listing, parse_receive_reply, parse_version_reply,
};

/// A regex strategy, compiled once (a `&str` strategy compiles its regex
/// for every value it makes).
fn re(pattern: &str) -> proptest::string::RegexGeneratorStrategy<String> {
    proptest::string::string_regex(pattern).unwrap()
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    ProptestConfig {
        cases,
        // Failures are turned into plain tests below, not files in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// An error message a person reads in a log: one line, not empty.
fn one_line(msg: &str) -> Result<(), TestCaseError> {
    prop_assert!(!msg.trim().is_empty(), "empty message");
    prop_assert!(
        !msg.contains('\n') && !msg.contains('\r'),
        "message of more than one line: {msg:?}"
    );
    Ok(())
}

/// Characters that matter to the grammars here, and some that break them.
const ALPHABET: &[char] = &[
    '0', '1', '5', '9', 's', 'm', 'h', 'd', 'k', 'b', 'g', 'K', 'M', 'G', 'x', ' ', '\t', '\n',
    '\r', '\0', '.', '-', '+', '~', '_', ':', '/', 'A', 'z', 'é', '٣', '\u{85}', '\u{3000}',
    '\u{202e}', '\u{1b}',
];

/// `base`, then up to four insertions, deletions or replacements of
/// characters from `ALPHABET` at random places.
fn mutated(base: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    (base, vec((any::<Index>(), 0u8..3, select(ALPHABET)), 0..5)).prop_map(|(s, edits)| {
        let mut chars: Vec<char> = s.chars().collect();
        for (at, op, c) in edits {
            match op {
                0 => chars.insert(at.index(chars.len() + 1), c),
                1 if !chars.is_empty() => {
                    chars.remove(at.index(chars.len()));
                }
                _ if !chars.is_empty() => {
                    let i = at.index(chars.len());
                    chars[i] = c;
                }
                _ => chars.push(c),
            }
        }
        chars.into_iter().collect()
    })
}

/// Any text: arbitrary characters, or arbitrary bytes read as UTF-8.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        vec(any::<u8>(), 0..200).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

// ---------------------------------------------------------------- units

/// The longest duration every version of blat accepts (100 years).
const DURATION_FLOOR: u128 = 36_500 * 86_400;
/// The largest size every version of blat accepts (2^63 - 1 bytes).
const SIZE_FLOOR: u128 = i64::MAX as u128;

/// What a duration means by its grammar, in unbounded arithmetic: `None`
/// when it is not one.
fn duration_oracle(text: &str) -> Option<u128> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    let number = |digits: &str| digits.parse::<u128>().unwrap_or(u128::MAX);
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return Some(number(t));
    }
    let mut total: u128 = 0;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u128 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return None,
        };
        if digits.is_empty() {
            return None;
        }
        total = total.saturating_add(number(&digits).saturating_mul(unit));
        digits.clear();
    }
    digits.is_empty().then_some(total)
}

fn size_oracle(text: &str) -> Option<u128> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    if number.is_empty() {
        return None;
    }
    let multiplier: u128 = match unit.to_ascii_lowercase().as_str() {
        "" | "k" | "b" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return None,
    };
    Some(
        number
            .parse::<u128>()
            .unwrap_or(u128::MAX)
            .saturating_mul(multiplier),
    )
}

fn check_duration(text: &str) -> Result<(), TestCaseError> {
    let oracle = duration_oracle(text);
    match parse_duration(text) {
        Ok(d) => prop_assert_eq!(Some(d.as_secs() as u128), oracle, "{:?}", text),
        Err(e) => {
            one_line(&e)?;
            prop_assert!(
                oracle.is_none_or(|n| n > DURATION_FLOOR),
                "{text:?} means {oracle:?} s but was refused: {e}"
            );
        }
    }
    Ok(())
}

fn check_size(text: &str) -> Result<(), TestCaseError> {
    let oracle = size_oracle(text);
    match parse_size(text) {
        Ok(n) => prop_assert_eq!(Some(n as u128), oracle, "{:?}", text),
        Err(e) => {
            one_line(&e)?;
            prop_assert!(
                oracle.is_none_or(|n| n > SIZE_FLOOR),
                "{text:?} means {oracle:?} bytes but was refused: {e}"
            );
        }
    }
    Ok(())
}

/// Terms as the grammar has them: up to 25 digits and a unit, or a bare number.
fn duration_like() -> impl Strategy<Value = String> {
    prop_oneof![
        vec((re("[0-9]{1,25}"), select(&['s', 'm', 'h', 'd'][..])), 1..4)
            .prop_map(|terms| terms.into_iter().map(|(n, u)| format!("{n}{u}")).collect()),
        re("[0-9]{1,25}"),
    ]
}

fn size_like() -> impl Strategy<Value = String> {
    (
        re("[0-9]{1,22}"),
        select(&["", "k", "b", "m", "g", "K", "G", "t", "kb"][..]),
    )
        .prop_map(|(n, u)| format!("{n}{u}"))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn durations_of_any_text(text in any_text()) {
        check_duration(&text)?;
    }

    #[test]
    fn durations_near_the_grammar(text in mutated(duration_like())) {
        check_duration(&text)?;
    }

    #[test]
    fn durations_read_back_as_written(secs in 0u64..=DURATION_FLOOR as u64) {
        let d = Duration::from_secs(secs);
        prop_assert_eq!(parse_duration(&human_duration(d)), Ok(d));
        prop_assert_eq!(parse_duration(&secs.to_string()), Ok(d));
    }

    #[test]
    fn sizes_of_any_text(text in any_text()) {
        check_size(&text)?;
    }

    #[test]
    fn sizes_near_the_grammar(text in mutated(size_like())) {
        check_size(&text)?;
    }

    #[test]
    fn sizes_read_back_as_written(
        (unit, shift) in select(&[("k", 10u32), ("b", 10), ("", 10), ("m", 20), ("g", 30)][..]),
        n in any::<u64>(),
    ) {
        let n = n >> (shift + 1); // so that n << shift fits in an i64
        prop_assert_eq!(parse_size(&format!("{n}{unit}")), Ok(n << shift));
    }
}

// ---------------------------------------------------------------- names

fn valid_name(text: &str) -> bool {
    let b = text.as_bytes();
    !b.is_empty()
        && b.len() <= 255
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"._+~-".contains(&c))
}

const NAME: &str = "[A-Za-z0-9_][A-Za-z0-9._+~-]{0,254}";

/// A valid name: mostly short (cheap), now and then up to the limit.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => re("[A-Za-z0-9_][A-Za-z0-9._+~-]{0,10}"),
        1 => re(NAME),
    ]
}

fn name_like() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => re("[A-Za-z0-9_][A-Za-z0-9._+~-]{0,12}"),
        // Around the length limit.
        1 => re("[A-Za-z0-9_][A-Za-z0-9._+~-]{250,258}"),
        1 => Just("..".to_string()),
        1 => Just(".".to_string()),
    ]
}

fn check_name(text: &str) -> Result<(), TestCaseError> {
    match Name::new(text) {
        Ok(n) => {
            prop_assert!(valid_name(text), "{text:?} accepted");
            prop_assert_eq!(n.as_str(), text);
        }
        Err(e) => {
            prop_assert!(!valid_name(text), "{text:?} refused: {e}");
            one_line(&e)?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn names_of_any_text(text in any_text()) {
        check_name(&text)?;
    }

    #[test]
    fn names_near_the_rule(text in mutated(name_like())) {
        check_name(&text)?;
    }

    #[test]
    fn valid_names_are_accepted(text in re(NAME)) {
        let name = Name::new(&text).unwrap();
        prop_assert_eq!(name.as_str(), text.as_str());
    }
}

// ---------------------------------------------------------------- tags

fn check_tag(name: &OsStr) -> Result<(), TestCaseError> {
    let oracle = name.to_str().and_then(|t| {
        let (p, v) = t.split_once("::")?;
        (valid_name(p) && valid_name(v)).then(|| (p.to_string(), v.to_string()))
    });
    match parse_tag(name) {
        Ok(pv) => {
            prop_assert_eq!(
                Some((pv.package.to_string(), pv.version.to_string())),
                oracle
            );
            let written = tag_name(&pv);
            prop_assert_eq!(OsStr::new(&written), name);
        }
        Err(e) => {
            prop_assert!(oracle.is_none(), "{name:?} refused: {e}");
            one_line(&e)?;
        }
    }
    Ok(())
}

fn tag_like() -> impl Strategy<Value = String> {
    (
        name_like(),
        select(&["::", ":", ":::", "::::", "/", ""][..]),
        name_like(),
    )
        .prop_map(|(p, sep, v)| format!("{p}{sep}{v}"))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn tag_names_of_any_bytes(bytes in vec(any::<u8>(), 0..300)) {
        check_tag(OsStr::from_bytes(&bytes))?;
    }

    #[test]
    fn tag_names_near_the_grammar(text in mutated(tag_like())) {
        check_tag(OsStr::new(&text))?;
    }

    #[test]
    fn tags_read_back_as_written(p in name(), v in name()) {
        let pv = PackageVersion::new(&p, &v).unwrap();
        prop_assert_eq!(parse_tag(OsStr::new(&tag_name(&pv))), Ok(pv));
    }
}

// ------------------------------------------------------ receiver listing

/// A field of a listing line: a valid name, a number, or anything.
fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        name_like(),
        any::<i64>().prop_map(|n| n.to_string()),
        re("[0-9]{15,22}"),
        Just("./1.0".to_string()),
        Just("../q/1".to_string()),
        Just(String::new()),
        any_text(),
    ]
}

fn listing_line() -> impl Strategy<Value = String> {
    (
        select(&["V", "A", "L", "X", "v", ""][..]),
        vec(field(), 0..6),
    )
        .prop_map(|(kind, fields)| {
            let mut line = kind.to_string();
            for f in fields {
                line.push('\t');
                line.push_str(&f);
            }
            line
        })
}

fn listing_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any_text(),
        mutated(vec(listing_line(), 0..8).prop_map(|lines| lines.join("\n"))),
    ]
}

fn pv() -> impl Strategy<Value = PackageVersion> {
    (name(), name()).prop_map(|(p, v)| PackageVersion::new(&p, &v).unwrap())
}

fn small_pv() -> impl Strategy<Value = PackageVersion> {
    (re("[a-z][a-z0-9.]{0,6}"), re("[0-9][a-z0-9.]{0,6}"))
        .prop_map(|(p, v)| PackageVersion::new(&p, &v).unwrap())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn listings_of_any_text(text in listing_text()) {
        let listing = parse_listing(&text);
        for bad in &listing.rejected {
            prop_assert!(!bad.contains('\n') && !bad.contains('\r'), "{bad:?}");
        }
        // Whatever was taken holds valid names only (they are types that
        // can only be built from valid names) and came from a line.
        let lines = text.lines().filter(|l| !l.is_empty()).count();
        prop_assert!(
            listing.versions.len() + listing.aliases.len() + listing.leftovers.len()
                + listing.rejected.len() <= lines
        );
        let others = text
            .lines()
            .filter(|l| !l.is_empty())
            .filter(|l| !(l.starts_with("V\t") || l.starts_with("A\t") || l.starts_with("L\t")))
            .count();
        prop_assert!(listing.rejected.len() >= others, "every other line is rejected");
    }

    #[test]
    fn listings_read_back_as_written(
        versions in btree_map(pv(), any::<i64>(), 0..6),
        aliases in btree_set((name(), name(), name(), any::<bool>()), 0..4),
        leftovers in vec(re("[a-z0-9./_-]{1,40}"), 0..3),
    ) {
        let mut text = String::new();
        for (pv, m) in &versions {
            text.push_str(&format!("V\t{}\t{}\t{m}\n", pv.package, pv.version));
        }
        let mut want = Vec::new();
        for (p, a, v, dot) in &aliases {
            let target = if *dot { format!("./{v}") } else { v.clone() };
            text.push_str(&format!("A\t{p}\t{a}\t{target}\n"));
            want.push(Alias {
                package: Name::new(p).unwrap(),
                alias: Name::new(a).unwrap(),
                version: Name::new(v).unwrap(),
            });
        }
        for l in &leftovers {
            text.push_str(&format!("L\t{l}\n"));
        }
        want.sort();
        let listing = parse_listing(&text);
        let mtimes: std::collections::BTreeMap<_, _> = listing.versions.iter().map(|(pv, on)| (pv.clone(), on.mtime)).collect();
        prop_assert_eq!(mtimes, versions);
        prop_assert_eq!(listing.aliases, want);
        prop_assert_eq!(listing.leftovers, leftovers);
        prop_assert!(listing.rejected.is_empty());
    }
}

// ------------------------------------------------------ receiver replies

fn reply_text() -> impl Strategy<Value = String> {
    let line = (
        select(
            &[
                "ok",
                "fail",
                "alias",
                "deleted",
                "avail",
                "blat-receiver",
                "sha256",
                "decompressors",
                "x",
            ][..],
        ),
        vec(field(), 0..5),
        select(&["\t", " "][..]),
    )
        .prop_map(|(kind, fields, sep)| {
            let mut line = kind.to_string();
            for f in fields {
                line.push_str(sep);
                line.push_str(&f);
            }
            line
        });
    prop_oneof![
        any_text(),
        mutated(vec(line, 0..6).prop_map(|lines| lines.join("\n"))),
    ]
}

/// A reason as the receiver writes one: printable, no tab, not blank.
const REASON: &str = "[a-zA-Z0-9][a-zA-Z0-9 :/.,'()-]{0,40}[a-zA-Z0-9.)]";

proptest! {
    #![proptest_config(config())]

    #[test]
    fn receive_replies_of_any_text(
        stdout in reply_text(),
        stderr in any_text(),
        sent in vec(small_pv(), 0..4),
    ) {
        let sent: Vec<&PackageVersion> = sent.iter().collect();
        let results = parse_receive_reply(&stdout, &stderr, &sent);
        for pv in &sent {
            prop_assert!(results.iter().any(|r| r.pv == **pv), "{pv} has no outcome");
        }
        for r in &results {
            if let Err(e) = &r.result {
                one_line(e)?;
            }
        }
    }

    #[test]
    fn receive_replies_read_back_as_written(
        outcomes in btree_map(small_pv(), proptest::option::of(re(REASON)), 0..6),
        missing in btree_set(small_pv(), 0..3),
        stderr in prop_oneof![Just(String::new()), re("[a-z ]{1,20}\n[a-z ]{1,20}\n")],
    ) {
        let mut stdout = String::new();
        for (pv, reason) in &outcomes {
            match reason {
                None => stdout.push_str(&format!("ok\t{}\t{}\n", pv.package, pv.version)),
                Some(r) => stdout.push_str(&format!("fail\t{}\t{}\t{r}\n", pv.package, pv.version)),
            }
        }
        let missing: Vec<&PackageVersion> =
            missing.iter().filter(|pv| !outcomes.contains_key(pv)).collect();
        let mut sent: Vec<&PackageVersion> = outcomes.keys().collect();
        sent.extend(&missing);
        let results = parse_receive_reply(&stdout, &stderr, &sent);
        prop_assert_eq!(results.len(), sent.len());
        for r in &results {
            match outcomes.get(&r.pv) {
                Some(None) => prop_assert_eq!(&r.result, &Ok(())),
                Some(Some(reason)) => prop_assert_eq!(&r.result, &Err(reason.clone())),
                None => {
                    prop_assert!(missing.contains(&&r.pv));
                    one_line(r.result.as_ref().unwrap_err())?;
                }
            }
        }
    }

    #[test]
    fn version_replies(
        text in reply_text(),
        protocol in vec(re("[a-z0-9.]{1,8}"), 1..3),
        sha in re("[0-9a-f]{64}"),
        decompressors in vec(select(&["gzip", "zstd", "xz"][..]), 0..3),
    ) {
        let _ = parse_version_reply(&text);
        let reply = format!(
            "blat-receiver {}\nsha256 {sha}\ndecompressors {}\n",
            protocol.join(" "),
            decompressors.join(" ")
        );
        let info = parse_version_reply(&reply);
        prop_assert_eq!(info.protocol, protocol.join(" "));
        prop_assert_eq!(info.sha256, sha);
        prop_assert_eq!(info.decompressors, decompressors);
    }

    #[test]
    fn delete_replies(
        text in reply_text(),
        pv in pv(),
        aliases in vec(name(), 0..3),
        bytes in any::<u64>(),
    ) {
        let _ = parse_delete_reply(&text);
        let mut reply = String::new();
        for a in &aliases {
            reply.push_str(&format!("alias\t{}\t{a}\n", pv.package));
        }
        reply.push_str(&format!("deleted\t{}\t{}\t{bytes}\n", pv.package, pv.version));
        let d = parse_delete_reply(&reply);
        prop_assert_eq!(d.bytes, bytes);
        prop_assert_eq!(
            d.aliases.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            aliases
        );
    }

    #[test]
    fn df_replies(text in reply_text(), n in any::<u64>()) {
        if let Err(e) = parse_df_reply(&text) {
            one_line(&format!("{e:#}"))?;
        }
        prop_assert_eq!(parse_df_reply(&format!("total\t1\navail\t{n}\n")).unwrap(), n);
    }
}

// ---------------------------------------------------------- PackageList

fn packagelist_line() -> impl Strategy<Value = String> {
    prop_oneof![
        (name_like(), select(&[" ", "\t", "  ", ""][..]), name_like())
            .prop_map(|(p, sep, v)| format!("{p}{sep}{v}")),
        Just("# blat packagelist written 2024-01-01T00:00:00Z".to_string()),
        (name_like(), name_like(), name_like()).prop_map(|(a, b, c)| format!("{a} {b} {c}")),
        Just(String::new()),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn packagelists_of_any_text(
        text in prop_oneof![
            any_text(),
            mutated(vec(packagelist_line(), 0..8).prop_map(|l| l.join("\n"))),
        ]
    ) {
        match parse_packagelist(Path::new("/srv/a/.dpkg_archive/packagelist.txt"), &text) {
            Ok(set) => {
                // Every package-version listed is one of its lines.
                for pv in set.versions.keys() {
                    let line = format!("{} {}", pv.package, pv.version);
                    prop_assert!(
                        text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == line),
                        "{pv} not in the text"
                    );
                }
            }
            Err(e) => {
                let e = format!("{e:#}");
                one_line(&e)?;
                prop_assert!(e.contains("nothing is aged"), "{e}");
            }
        }
    }

    #[test]
    fn packagelists_read_back_as_written(
        versions in btree_set(pv(), 0..20),
        now in any::<i64>(),
    ) {
        let mut set = CurrentSet::default();
        for pv in &versions {
            set.versions.insert(pv.clone(), SourceEntry::Missing);
        }
        let text = packagelist_text(&set, now);
        let back = parse_packagelist(Path::new("packagelist.txt"), &text).unwrap();
        prop_assert_eq!(back.versions.keys().collect::<Vec<_>>(), versions.iter().collect::<Vec<_>>());
    }
}

// ----------------------------------------- cases the properties once found

#[test]
fn a_refused_duration_or_size_is_one_line() {
    for text in ["5\nx", "1h\n2", "\u{1b}[2J5x", "1\r2"] {
        let e = parse_duration(text).unwrap_err();
        assert!(
            !e.contains('\n') && !e.contains('\r') && !e.contains('\u{1b}'),
            "{e:?}"
        );
        let e = parse_size(text).unwrap_err();
        assert!(
            !e.contains('\n') && !e.contains('\r') && !e.contains('\u{1b}'),
            "{e:?}"
        );
    }
}

#[test]
fn a_receive_failure_without_reason_still_says_why() {
    let pv = PackageVersion::new("p", "1").unwrap();
    let r = parse_receive_reply("fail\tp\t1\n", "", &[&pv]);
    assert_eq!(r.len(), 1);
    assert!(!r[0].result.as_ref().unwrap_err().is_empty());
    let q = PackageVersion::new("q", "1").unwrap();
    let r = parse_receive_reply("", "tar: short read\ntar: exiting\n", &[&q]);
    assert_eq!(
        r[0].result,
        Err("tar: short read; tar: exiting".to_string())
    );
}
