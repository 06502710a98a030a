//! User-Agent parsing without regex: enough structure for ad-platform matching.
//!
//! The parser first makes one pass over the header that records where each token it cares
//! about first occurs (see [`Scan`]), then decides from those positions in a fixed order (bots
//! first, then in-app webviews, then browsers whose tokens hide others: Edge, Opera and Samsung
//! Internet all announce `Chrome/`, and Chrome announces `Safari/`). Browser and OS tokens are
//! matched exactly, as real User-Agents spell them; bot names case-insensitively. It never
//! panics and never slices a string other than on a char boundary.

use alloc::borrow::Cow;
use alloc::string::String;
use serde::{Deserialize, Serialize};

/// The device class a User-Agent string announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceType {
    Desktop,
    Mobile,
    Tablet,
    Bot,
    Unknown,
}

/// Browser and OS facts parsed from one User-Agent header, plus the raw header. The names
/// (and the Windows versions) the parser knows are borrowed from its tables, not allocated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserAgent {
    pub browser_name: Cow<'static, str>,
    pub browser_version: String,
    pub os_name: Cow<'static, str>,
    pub os_version: Cow<'static, str>,
    pub device_type: DeviceType,
    pub is_bot: bool,
    pub raw: String,
}

/// Longest User-Agent prefix, in bytes, that [`parse_user_agent`] reads and keeps.
pub const MAX_USER_AGENT_LEN: usize = 1024;

const UNKNOWN: &str = "Unknown";

/// Parses a User-Agent header. Never fails: unknown parts are reported as "Unknown"/"".
///
/// Only the first [`MAX_USER_AGENT_LEN`] (1024) bytes are looked at, cut back to the nearest
/// char boundary, and `raw` in the result holds that same truncated prefix, not the whole
/// input: real User-Agents are far shorter, and this bounds both the work and the size of
/// what is forwarded.
///
/// Names used: browsers "Chrome", "Chromium", "Safari", "Firefox", "Edge",
/// "Samsung Internet", "Opera", "Facebook", "Instagram", "TikTok" (or the bot's own name when
/// `is_bot`), else "Unknown"; systems "iOS", "Android", "Windows", "macOS", "Linux",
/// "Chrome OS", else "Unknown". For bots the OS they announce is still reported, but
/// `device_type` is [`DeviceType::Bot`].
pub fn parse_user_agent(raw: &str) -> UserAgent {
    let ua = truncate(raw, MAX_USER_AGENT_LEN);
    let scan = Scan::new(ua);
    let os = detect_os(&scan);
    let (browser_name, browser_version, is_bot, device_type) = match detect_bot(&scan) {
        Some((name, version)) => (name, version, true, DeviceType::Bot),
        None => {
            let (name, version) = detect_browser(&scan, os.name);
            (Cow::Borrowed(name), version, false, os.device)
        }
    };
    UserAgent {
        browser_name,
        browser_version: String::from(browser_version),
        os_name: Cow::Borrowed(os.name),
        os_version: os.version,
        device_type,
        is_bot,
        raw: String::from(ua),
    }
}

/// The longest prefix of `s` no longer than `max` bytes that ends on a char boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// Declares a fieldless enum naming the tokens of one table and, in the same order, the
/// table of their texts, so that `Enum::Variant as usize` indexes the table.
macro_rules! token_table {
    ($(#[$meta:meta])* enum $name:ident in $table:ident { $($variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy)]
        enum $name {
            $($variant,)*
        }
        const $table: &[&str] = &[$($text,)*];
    };
}

token_table! {
    /// Tokens matched exactly (browser and OS tokens always spelled one way). Only the first
    /// occurrence of each is ever used.
    enum Needle in TOKENS {
        IPad = "iPad",
        IPhone = "iPhone",
        IPod = "iPod",
        Cpu = "CPU",
        IosSp = "iOS ",
        Android = "Android",
        Mobile = "Mobile",
        Windows = "Windows",
        WindowsNtSp = "Windows NT ",
        CrosSp = "CrOS ",
        MacOsX = "Mac OS X",
        MacOsXSp = "Mac OS X ",
        Macintosh = "Macintosh",
        Linux = "Linux",
        X11 = "X11",
        Ubuntu = "Ubuntu",
        InstagramSp = "Instagram ",
        Fban = "FBAN/",
        Fbav = "FBAV/",
        FbIab = "FB_IAB",
        MusicalLy = "musical_ly",
        MusicalLyUs = "musical_ly_",
        BytedanceWebview = "BytedanceWebview",
        TikTok = "TikTok",
        TikTokSp = "TikTok ",
        AppVersionLower = "app_version/",
        AppVersion = "AppVersion/",
        EdgA = "EdgA/",
        EdgiOs = "EdgiOS/",
        Edg = "Edg/",
        Edge = "Edge/",
        Opr = "OPR/",
        Opt = "OPT/",
        OpiOs = "OPiOS/",
        Opera = "Opera/",
        OperaSp = "Opera ",
        SamsungBrowser = "SamsungBrowser/",
        FxiOs = "FxiOS/",
        Firefox = "Firefox/",
        Chromium = "Chromium/",
        CriOs = "CriOS/",
        Chrome = "Chrome/",
        Safari = "Safari/",
        Version = "Version/",
    }
}

/// Well-known automated clients: (needle, searched case-insensitively; reported name).
/// Tried in this order: the first one present anywhere wins.
const KNOWN_BOTS: &[(&str, &str)] = &[
    ("Googlebot", "Googlebot"),
    ("AdsBot-Google", "AdsBot-Google"),
    ("Mediapartners-Google", "Mediapartners-Google"),
    ("Google-InspectionTool", "Google-InspectionTool"),
    ("bingbot", "bingbot"),
    ("AhrefsBot", "AhrefsBot"),
    ("facebookexternalhit", "facebookexternalhit"),
    ("facebookcatalog", "facebookcatalog"),
    ("meta-externalagent", "meta-externalagent"),
    ("Twitterbot", "Twitterbot"),
    ("Slackbot", "Slackbot"),
    ("HeadlessChrome", "HeadlessChrome"),
    ("PhantomJS", "PhantomJS"),
    ("Chrome-Lighthouse", "Chrome-Lighthouse"),
    ("curl/", "curl"),
    ("Wget", "Wget"),
    ("python-requests", "python-requests"),
    ("Python-urllib", "Python-urllib"),
    ("Go-http-client", "Go-http-client"),
    ("axios/", "axios"),
    ("node-fetch", "node-fetch"),
    ("libwww-perl", "libwww-perl"),
];

/// Words that mark a self-declared crawler anywhere inside a product token.
const BOT_WORDS: &[&str] = &["bot", "crawler", "spider"];

/// The case-insensitive tokens [`Scan`] looks for: token k is `KNOWN_BOTS[k].0`, then token
/// `KNOWN_BOTS.len() + j` is `BOT_WORDS[j]`.
fn ci_token(k: usize) -> Option<&'static str> {
    match KNOWN_BOTS.get(k) {
        Some(&(needle, _)) => Some(needle),
        None => BOT_WORDS.get(k.checked_sub(KNOWN_BOTS.len())?).copied(),
    }
}

const CI_TOKEN_COUNT: usize = KNOWN_BOTS.len() + BOT_WORDS.len();

/// Bits of the case-insensitive tokens that are well-known bots.
const KNOWN_BOTS_MASK: u64 = (1u64 << KNOWN_BOTS.len()) - 1;

/// Bits of the case-insensitive tokens that are bot words.
const BOT_WORDS_MASK: u64 = ((1u64 << CI_TOKEN_COUNT) - 1) & !KNOWN_BOTS_MASK;

/// Device models that contain a bot word but are phones.
const NOT_BOTS: &[&str] = &["cubot"];

/// The bucket of [`TOKEN_STARTS`] and [`CI_TOKEN_STARTS`] for a pair of bytes (a
/// multiplicative hash of the two: the tokens' first pairs rarely share a bucket, so a
/// position is compared against little more than the tokens that start with its pair).
#[inline(always)]
const fn bucket(b0: u8, b1: u8) -> usize {
    ((u16::from_le_bytes([b0, b1]) as u32 * 275) >> 8) as usize & 0xff
}

/// Sets bit `k` in the bucket of the first two bytes of `token`, and when `fold` in the
/// buckets of all their ASCII cases.
const fn mark(table: &mut [u64; 256], token: &str, k: usize, fold: bool) {
    let t = token.as_bytes();
    let (b0, b1) = (t[0], t[1]);
    let cases0 = [b0, b0.to_ascii_lowercase(), b0.to_ascii_uppercase()];
    let cases1 = [b1, b1.to_ascii_lowercase(), b1.to_ascii_uppercase()];
    let n = if fold { 3 } else { 1 };
    let mut x = 0;
    while x < n {
        let mut y = 0;
        while y < n {
            table[bucket(cases0[x], cases1[y])] |= 1 << k;
            y += 1;
        }
        x += 1;
    }
}

/// For each bucket of a pair of bytes, the bit set of the [`TOKENS`] whose first two bytes
/// fall in it. Compile time only.
const fn token_starts() -> [u64; 256] {
    let mut out = [0u64; 256];
    let mut k = 0;
    while k < TOKENS.len() {
        mark(&mut out, TOKENS[k], k, false);
        k += 1;
    }
    out
}

/// For each bucket of a pair of bytes, the bit set of the case-insensitive tokens (see
/// [`ci_token`]) whose first two bytes, in any ASCII case, fall in it. Compile time only.
const fn ci_token_starts() -> [u64; 256] {
    let mut out = [0u64; 256];
    let mut k = 0;
    while k < KNOWN_BOTS.len() {
        mark(&mut out, KNOWN_BOTS[k].0, k, true);
        k += 1;
    }
    let mut j = 0;
    while j < BOT_WORDS.len() {
        mark(&mut out, BOT_WORDS[j], KNOWN_BOTS.len() + j, true);
        j += 1;
    }
    out
}

// Each token is a bit of a u64, and at least 2 bytes long (see `token_pairs`).
const _: () = assert!(TOKENS.len() <= 64 && CI_TOKEN_COUNT <= 64);

static TOKEN_STARTS: [u64; 256] = token_starts();
static CI_TOKEN_STARTS: [u64; 256] = ci_token_starts();

/// The index of a pair of bytes in [`PAIRS`].
const fn pair_index(b0: u8, b1: u8) -> usize {
    // Little-endian order: the index is the two bytes read as one u16, a single load.
    u16::from_le_bytes([b0, b1]) as usize
}

/// Sets the bit of the first two bytes of `token` in `table`, in every ASCII case when `fold`.
const fn mark_pair(table: &mut [u64; 1024], token: &str, fold: bool) {
    let t = token.as_bytes();
    let (b0, b1) = (t[0], t[1]);
    let cases0 = [b0, b0.to_ascii_lowercase(), b0.to_ascii_uppercase()];
    let cases1 = [b1, b1.to_ascii_lowercase(), b1.to_ascii_uppercase()];
    let n = if fold { 3 } else { 1 };
    let mut x = 0;
    while x < n {
        let mut y = 0;
        while y < n {
            let i = pair_index(cases0[x], cases1[y]);
            table[i / 64] |= 1 << (i % 64);
            y += 1;
        }
        x += 1;
    }
}

/// An 8 KB bit set of the byte pairs that start some token (bot names in any ASCII case):
/// the cheap test that lets [`Scan`] skip nearly every position of a real User-Agent.
/// Compile time only.
const fn token_pairs() -> [u64; 1024] {
    let mut out = [0u64; 1024];
    let mut k = 0;
    while k < TOKENS.len() {
        mark_pair(&mut out, TOKENS[k], false);
        k += 1;
    }
    k = 0;
    while k < KNOWN_BOTS.len() {
        mark_pair(&mut out, KNOWN_BOTS[k].0, true);
        k += 1;
    }
    k = 0;
    while k < BOT_WORDS.len() {
        mark_pair(&mut out, BOT_WORDS[k], true);
        k += 1;
    }
    out
}

static PAIRS: [u64; 1024] = token_pairs();

/// Whether the pair with this [`pair_index`] starts some token.
#[inline(always)]
fn is_pair(p: usize) -> bool {
    PAIRS
        .get(p / 64)
        .is_some_and(|bits| bits & (1 << (p % 64)) != 0)
}

/// Where each token of [`TOKENS`] and each case-insensitive token ([`ci_token`]) first
/// occurs in one User-Agent, found in a single pass over its bytes.
struct Scan<'a> {
    ua: &'a str,
    /// Bit k set when `TOKENS[k]` occurs; its first byte offset is then `at[k]`.
    found: u64,
    at: [u16; TOKENS.len()],
    /// The same for the case-insensitive tokens.
    ci_found: u64,
    ci_at: [u16; CI_TOKEN_COUNT],
}

/// Whether `hay` starts with `needle`, byte by byte (tokens are short: no call to memcmp).
fn starts_with_exact(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay.iter().zip(needle).all(|(a, b)| a == b)
}

/// Whether `hay` starts with `needle`, ignoring ASCII case.
fn starts_with_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len()
        && hay
            .iter()
            .zip(needle)
            .all(|(a, b)| a.eq_ignore_ascii_case(b))
}

/// The first eight bytes of `rest` as a little-endian u64, zero-padded past its end (no
/// token holds a zero byte, so padding never matches one).
#[inline(always)]
fn word_at(rest: &[u8]) -> u64 {
    let mut arr = [0u8; 8];
    match rest.get(..8) {
        Some(eight) => arr.copy_from_slice(eight),
        None => {
            if let Some(head) = arr.get_mut(..rest.len()) {
                head.copy_from_slice(rest);
            }
        }
    }
    u64::from_le_bytes(arr)
}

/// Whether `rest` continues `token` (longer than eight bytes, the first eight already
/// matched) exactly.
fn long_tail_exact(rest: &[u8], token: &str) -> bool {
    match (rest.get(8..), token.as_bytes().get(8..)) {
        (Some(r), Some(t)) => starts_with_exact(r, t),
        _ => false,
    }
}

/// [`long_tail_exact`] ignoring ASCII case.
fn long_tail_ci(rest: &[u8], token: &str) -> bool {
    match (rest.get(8..), token.as_bytes().get(8..)) {
        (Some(r), Some(t)) => starts_with_ci(r, t),
        _ => false,
    }
}

/// A token's first (up to) eight bytes as a little-endian u64 (lower-cased for the
/// case-insensitive tokens), compared with the word read where a token may start under the
/// mask of the token's length ([`prefix_mask`]); `fold` (see [`ci_folds`]) ORs 0x20 into
/// the word's letter bytes first: `b | 0x20` equals a lower-case ASCII letter exactly when
/// `b` is that letter in either case. Exact tokens pass 0. Tokens longer than eight bytes
/// then compare their tail.
#[inline(always)]
fn prefix_matches(w: u64, fold: u64, word: u64, len: usize) -> bool {
    (w | fold) & prefix_mask(len) == word
}

/// The bytes of a word that a token of `len` bytes covers.
#[inline(always)]
fn prefix_mask(len: usize) -> u64 {
    if len >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * len)) - 1
    }
}

/// The prefix word of `token`, lower-cased when `fold_case`. Compile time only.
const fn prefix(token: &str, fold_case: bool) -> u64 {
    let t = token.as_bytes();
    let mut word = 0u64;
    let mut j = 0;
    while j < 8 && j < t.len() {
        let mut b = t[j];
        // Zero bytes pad the word read near the end of a User-Agent.
        assert!(b != 0);
        if fold_case {
            b = b.to_ascii_lowercase();
        }
        word |= (b as u64) << (8 * j);
        j += 1;
    }
    word
}

/// The bits that fold the ASCII letters among the first eight bytes of `token`.
const fn fold_bits(token: &str) -> u64 {
    let t = token.as_bytes();
    let mut fold = 0u64;
    let mut j = 0;
    while j < 8 && j < t.len() {
        if t[j].is_ascii_alphabetic() {
            fold |= 0x20 << (8 * j);
        }
        j += 1;
    }
    fold
}

/// The prefix word of each of [`TOKENS`]. Compile time only.
const fn token_prefixes() -> [u64; TOKENS.len()] {
    let mut out = [0u64; TOKENS.len()];
    let mut k = 0;
    while k < TOKENS.len() {
        out[k] = prefix(TOKENS[k], false);
        k += 1;
    }
    out
}

/// The k-th case-insensitive token (`k < CI_TOKEN_COUNT`), as [`ci_token`] numbers them.
/// Compile time only.
const fn ci_token_at(k: usize) -> &'static str {
    if k < KNOWN_BOTS.len() {
        KNOWN_BOTS[k].0
    } else {
        BOT_WORDS[k - KNOWN_BOTS.len()]
    }
}

/// The lower-cased prefix word of each case-insensitive token (see [`ci_token`]). Compile
/// time only.
const fn ci_token_prefixes() -> [u64; CI_TOKEN_COUNT] {
    let mut out = [0u64; CI_TOKEN_COUNT];
    let mut k = 0;
    while k < CI_TOKEN_COUNT {
        out[k] = prefix(ci_token_at(k), true);
        k += 1;
    }
    out
}

/// The [`fold_bits`] of each case-insensitive token. Compile time only.
const fn ci_folds() -> [u64; CI_TOKEN_COUNT] {
    let mut out = [0u64; CI_TOKEN_COUNT];
    let mut k = 0;
    while k < CI_TOKEN_COUNT {
        out[k] = fold_bits(ci_token_at(k));
        k += 1;
    }
    out
}

/// The length of each case-insensitive token. Compile time only.
const fn ci_lens() -> [u8; CI_TOKEN_COUNT] {
    let mut out = [0u8; CI_TOKEN_COUNT];
    let mut k = 0;
    while k < CI_TOKEN_COUNT {
        out[k] = ci_token_at(k).len() as u8;
        k += 1;
    }
    out
}

static TOKEN_PREFIXES: [u64; TOKENS.len()] = token_prefixes();
static CI_TOKEN_PREFIXES: [u64; CI_TOKEN_COUNT] = ci_token_prefixes();
static CI_FOLDS: [u64; CI_TOKEN_COUNT] = ci_folds();
static CI_LENS: [u8; CI_TOKEN_COUNT] = ci_lens();

impl<'a> Scan<'a> {
    /// Scans `ua`, which must be at most [`MAX_USER_AGENT_LEN`] bytes (offsets fit a u16).
    fn new(ua: &'a str) -> Self {
        let mut scan = Scan {
            ua,
            found: 0,
            at: [0; TOKENS.len()],
            ci_found: 0,
            ci_at: [0; CI_TOKEN_COUNT],
        };
        let bytes = ua.as_bytes();
        // Every token is at least 2 bytes long, so it starts at the first byte of some pair.
        // Eight bytes are read at once and their seven pairs tested from that word; the last
        // pairs one by one.
        let mut i = 0;
        while let Some(chunk) = bytes.get(i..i + 8) {
            let Ok(arr) = <[u8; 8]>::try_from(chunk) else {
                break;
            };
            let w = u64::from_le_bytes(arr);
            for k in 0..7 {
                // pair_index of bytes i + k and i + k + 1: the u16 at that place in w.
                if is_pair(usize::from((w >> (8 * k)) as u16)) {
                    scan.token_at(bytes, i + k);
                }
            }
            i += 7;
        }
        while let Some(&[b, next]) = bytes.get(i..i + 2) {
            if is_pair(pair_index(b, next)) {
                scan.token_at(bytes, i);
            }
            i += 1;
        }
        scan
    }

    /// Records the tokens that start at `i`, where a pair of [`PAIRS`] starts (rare: out of
    /// the scanning loop). Each candidate's first eight bytes are compared in one masked
    /// u64 compare (see [`prefix_matches`]); only longer tokens compare the rest byte by
    /// byte.
    #[inline(never)]
    fn token_at(&mut self, bytes: &[u8], i: usize) {
        let Some(&[b0, b1]) = bytes.get(i..i + 2) else {
            return;
        };
        // A User-Agent is at most MAX_USER_AGENT_LEN bytes: offsets fit.
        let Ok(offset) = u16::try_from(i) else { return };
        let h = bucket(b0, b1);
        let mut pending = TOKEN_STARTS.get(h).copied().unwrap_or(0) & !self.found;
        let mut ci_pending = CI_TOKEN_STARTS.get(h).copied().unwrap_or(0) & !self.ci_found;
        if pending | ci_pending == 0 {
            return;
        }
        let rest = bytes.get(i..).unwrap_or(&[]);
        let w = word_at(rest);
        while pending != 0 {
            let k = pending.trailing_zeros() as usize;
            pending &= pending - 1;
            if let (Some(&word), Some(token)) = (TOKEN_PREFIXES.get(k), TOKENS.get(k))
                && prefix_matches(w, 0, word, token.len())
                && (token.len() <= 8 || long_tail_exact(rest, token))
                && let Some(slot) = self.at.get_mut(k)
            {
                *slot = offset;
                self.found |= 1 << k;
            }
        }
        while ci_pending != 0 {
            let k = ci_pending.trailing_zeros() as usize;
            ci_pending &= ci_pending - 1;
            if let (Some(&word), Some(&fold), Some(&len)) =
                (CI_TOKEN_PREFIXES.get(k), CI_FOLDS.get(k), CI_LENS.get(k))
                && prefix_matches(w, fold, word, usize::from(len))
                && (len <= 8 || ci_token(k).is_some_and(|t| long_tail_ci(rest, t)))
                && let Some(slot) = self.ci_at.get_mut(k)
            {
                *slot = offset;
                self.ci_found |= 1 << k;
            }
        }
    }

    fn has(&self, t: Needle) -> bool {
        self.found & (1 << t as u32) != 0
    }

    /// The text after the first occurrence of `t`.
    fn after(&self, t: Needle) -> Option<&'a str> {
        if !self.has(t) {
            return None;
        }
        let k = t as usize;
        let start = usize::from(*self.at.get(k)?);
        self.ua.get(start.saturating_add(TOKENS.get(k)?.len())..)
    }

    /// The version token right after the first occurrence of `t` (e.g. `Needle::Chrome`).
    fn version_of(&self, t: Needle) -> Option<&'a str> {
        self.after(t).map(version_at)
    }

    /// The lowest-numbered case-insensitive token among `mask` that occurs, with the text
    /// after its first occurrence.
    fn first_ci(&self, mask: u64) -> Option<(usize, &'a str)> {
        let hits = self.ci_found & mask;
        if hits == 0 {
            return None;
        }
        let k = hits.trailing_zeros() as usize;
        let start = usize::from(*self.ci_at.get(k)?);
        let rest = self.ua.get(start.saturating_add(ci_token(k)?.len())..)?;
        Some((k, rest))
    }
}

/// Byte offset of the first ASCII-case-insensitive occurrence of `needle` (which must be
/// ASCII) in `hay`. Because the needle is ASCII, the match starts and ends on char boundaries.
fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    let n = needle.as_bytes();
    if n.is_empty() {
        return Some(0);
    }
    hay.as_bytes()
        .windows(n.len())
        .position(|w| w.eq_ignore_ascii_case(n))
}

/// The text after the first exact occurrence of `token`.
fn after<'a>(hay: &'a str, token: &str) -> Option<&'a str> {
    hay.find(token)
        .and_then(|i| hay.get(i.saturating_add(token.len())..))
}

/// The longest prefix of `s` whose bytes all satisfy `keep`, which must refuse every
/// non-ASCII byte: the prefix then ends before an ASCII byte or at the end, on a char
/// boundary, and is the prefix of chars that `keep` accepts.
fn take_while(s: &str, keep: impl Fn(u8) -> bool) -> &str {
    let end = s.bytes().position(|b| !keep(b)).unwrap_or(s.len());
    s.get(..end).unwrap_or("")
}

fn is_version_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-'
}

/// A version token at the start of `s`: letters, digits, '.', '_' and '-'.
fn version_at(s: &str) -> &str {
    take_while(s, is_version_byte)
}

/// A numeric version at the start of `s` ("17_4_1", "10.15.7"), with '_' turned into '.' and
/// any trailing separator dropped.
fn numeric_version(s: &str) -> String {
    let v = take_while(s, |b| b.is_ascii_digit() || b == b'.' || b == b'_');
    let v = v.trim_end_matches(['.', '_']);
    v.replace('_', ".")
}

struct Os {
    name: &'static str,
    version: Cow<'static, str>,
    device: DeviceType,
}

fn detect_os(scan: &Scan<'_>) -> Os {
    let os = |name, version, device| Os {
        name,
        version,
        device,
    };
    // iOS first: its UAs say "like Mac OS X". iPadOS 13+ in desktop mode says "Macintosh" and
    // is reported as macOS, which is all the header lets anyone know.
    let ipad = scan.has(Needle::IPad);
    if ipad || scan.has(Needle::IPhone) || scan.has(Needle::IPod) {
        let version = scan
            .after(Needle::Cpu)
            .and_then(|rest| after(rest, "OS "))
            .map(numeric_version)
            .filter(|v| !v.is_empty())
            .or_else(|| scan.after(Needle::IosSp).map(numeric_version))
            .map_or(Cow::Borrowed(""), Cow::Owned);
        let device = if ipad {
            DeviceType::Tablet
        } else {
            DeviceType::Mobile
        };
        return os("iOS", version, device);
    }
    // Android before Linux: Android UAs say "Linux; Android 14".
    if let Some(rest) = scan.after(Needle::Android) {
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        let device = if scan.has(Needle::Mobile) {
            DeviceType::Mobile
        } else {
            DeviceType::Tablet
        };
        return os("Android", Cow::Owned(numeric_version(rest)), device);
    }
    if scan.has(Needle::Windows) {
        let version = scan
            .after(Needle::WindowsNtSp)
            .map(|rest| {
                let nt = take_while(rest, |b| b.is_ascii_digit() || b == b'.');
                Cow::Borrowed(match nt {
                    "10.0" => "10",
                    "6.3" => "8.1",
                    "6.2" => "8",
                    "6.1" => "7",
                    "6.0" => "Vista",
                    "5.1" | "5.2" => "XP",
                    "5.0" => "2000",
                    other => return Cow::Owned(String::from(other)),
                })
            })
            .unwrap_or(Cow::Borrowed(""));
        return os("Windows", version, DeviceType::Desktop);
    }
    // Chrome OS before Linux: "X11; CrOS x86_64 14541.0.0". The version is the platform one.
    if let Some(rest) = scan.after(Needle::CrosSp) {
        let version = rest
            .split([' ', ')', ';'])
            .nth(1)
            .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
            .map_or(Cow::Borrowed(""), |v| Cow::Owned(numeric_version(v)));
        return os("Chrome OS", version, DeviceType::Desktop);
    }
    if scan.has(Needle::MacOsX) || scan.has(Needle::Macintosh) {
        let version = scan
            .after(Needle::MacOsXSp)
            .map_or(Cow::Borrowed(""), |v| Cow::Owned(numeric_version(v)));
        return os("macOS", version, DeviceType::Desktop);
    }
    if scan.has(Needle::Linux) || scan.has(Needle::X11) || scan.has(Needle::Ubuntu) {
        return os("Linux", Cow::Borrowed(""), DeviceType::Desktop);
    }
    os(UNKNOWN, Cow::Borrowed(""), DeviceType::Unknown)
}

/// Returns (bot name, bot version) when the UA is an automated client.
fn detect_bot<'a>(scan: &Scan<'a>) -> Option<(Cow<'static, str>, &'a str)> {
    if let Some((k, rest)) = scan.first_ci(KNOWN_BOTS_MASK) {
        let &(needle, name) = KNOWN_BOTS.get(k)?;
        let version = if needle.ends_with('/') {
            version_at(rest)
        } else {
            rest.strip_prefix('/').map(version_at).unwrap_or("")
        };
        return Some((Cow::Borrowed(name), version));
    }
    // A product token can only hold a bot word if the whole header does.
    if scan.ci_found & BOT_WORDS_MASK == 0 {
        return None;
    }
    scan.ua
        .split(|c: char| c.is_whitespace() || matches!(c, ';' | '(' | ')' | ',' | '[' | ']'))
        .filter(|t| !t.is_empty() && !t.starts_with('+') && !t.contains("://"))
        .filter(|t| !NOT_BOTS.iter().any(|n| find_ci(t, n) == Some(0)))
        .find(|t| BOT_WORDS.iter().any(|w| find_ci(t, w).is_some()))
        .map(|token| match token.split_once('/') {
            Some((name, rest)) if !name.is_empty() => {
                (Cow::Owned(String::from(name)), version_at(rest))
            }
            _ => (Cow::Owned(String::from(token)), ""),
        })
}

/// Returns (browser name, browser version) for a UA that is not a bot.
fn detect_browser<'a>(scan: &Scan<'a>, os_name: &str) -> (&'static str, &'a str) {
    // In-app webviews first: they all embed a Safari or Chrome token.
    if let Some(rest) = scan.after(Needle::InstagramSp)
        && rest.starts_with(|c: char| c.is_ascii_digit())
    {
        return ("Instagram", version_at(rest));
    }
    if scan.has(Needle::Fban) || scan.has(Needle::Fbav) || scan.has(Needle::FbIab) {
        return ("Facebook", scan.version_of(Needle::Fbav).unwrap_or(""));
    }
    if scan.has(Needle::MusicalLy) || scan.has(Needle::BytedanceWebview) || scan.has(Needle::TikTok)
    {
        let version = scan
            .version_of(Needle::AppVersionLower)
            .or_else(|| scan.version_of(Needle::AppVersion))
            .or_else(|| {
                scan.version_of(Needle::MusicalLyUs)
                    .filter(|v| v.contains('.'))
            })
            .or_else(|| scan.version_of(Needle::TikTokSp))
            .unwrap_or("");
        return ("TikTok", version);
    }
    // Chromium-based browsers that also say "Chrome/", most specific first.
    for token in [Needle::EdgA, Needle::EdgiOs, Needle::Edg, Needle::Edge] {
        if let Some(v) = scan.version_of(token) {
            return ("Edge", v);
        }
    }
    for token in [Needle::Opr, Needle::Opt, Needle::OpiOs] {
        if let Some(v) = scan.version_of(token) {
            return ("Opera", v);
        }
    }
    let opera = scan.version_of(Needle::Opera).or_else(|| {
        scan.version_of(Needle::OperaSp)
            .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
    });
    if let Some(v) = opera {
        // Presto-era Opera froze "Opera/9.80" and put the real version in "Version/".
        return ("Opera", scan.version_of(Needle::Version).unwrap_or(v));
    }
    if let Some(v) = scan.version_of(Needle::SamsungBrowser) {
        return ("Samsung Internet", v);
    }
    for token in [Needle::FxiOs, Needle::Firefox] {
        if let Some(v) = scan.version_of(token) {
            return ("Firefox", v);
        }
    }
    if let Some(v) = scan.version_of(Needle::Chromium) {
        return ("Chromium", v);
    }
    for token in [Needle::CriOs, Needle::Chrome] {
        if let Some(v) = scan.version_of(token) {
            return ("Chrome", v);
        }
    }
    // Safari last; the pre-Chrome Android stock browser also says "Safari/" but is not Safari.
    if scan.has(Needle::Safari) && os_name != "Android" {
        return ("Safari", scan.version_of(Needle::Version).unwrap_or(""));
    }
    (UNKNOWN, "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    #[allow(clippy::too_many_arguments)]
    fn check(
        ua: &str,
        browser: &str,
        browser_version: &str,
        os: &str,
        os_version: &str,
        device: DeviceType,
        is_bot: bool,
    ) {
        let got = parse_user_agent(ua);
        let want = UserAgent {
            browser_name: Cow::Owned(browser.to_string()),
            browser_version: browser_version.to_string(),
            os_name: Cow::Owned(os.to_string()),
            os_version: Cow::Owned(os_version.to_string()),
            device_type: device,
            is_bot,
            raw: ua.to_string(),
        };
        assert_eq!(got, want, "for UA {ua:?}");
    }

    use DeviceType::{Bot, Desktop, Mobile, Tablet, Unknown};

    // --- Desktop browsers ---

    #[test]
    fn chrome_windows_10() {
        check(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Safari/537.36",
            "Chrome",
            "124.0.6367.82",
            "Windows",
            "10",
            Desktop,
            false,
        );
    }

    #[test]
    fn chrome_windows_7() {
        check(
            "Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/109.0.0.0 Safari/537.36",
            "Chrome",
            "109.0.0.0",
            "Windows",
            "7",
            Desktop,
            false,
        );
    }

    #[test]
    fn chrome_windows_8_and_8_1() {
        check(
            "Mozilla/5.0 (Windows NT 6.3; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/109.0.0.0 Safari/537.36",
            "Chrome",
            "109.0.0.0",
            "Windows",
            "8.1",
            Desktop,
            false,
        );
        check(
            "Mozilla/5.0 (Windows NT 6.2; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/49.0.2623.112 Safari/537.36",
            "Chrome",
            "49.0.2623.112",
            "Windows",
            "8",
            Desktop,
            false,
        );
    }

    #[test]
    fn chrome_macos() {
        check(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            "Chrome",
            "124.0.0.0",
            "macOS",
            "10.15.7",
            Desktop,
            false,
        );
    }

    #[test]
    fn chrome_linux() {
        check(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            "Chrome",
            "124.0.0.0",
            "Linux",
            "",
            Desktop,
            false,
        );
    }

    #[test]
    fn chrome_chrome_os() {
        check(
            "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            "Chrome",
            "124.0.0.0",
            "Chrome OS",
            "14541.0.0",
            Desktop,
            false,
        );
    }

    #[test]
    fn chromium_linux() {
        check(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chromium/124.0.6367.78 Chrome/124.0.6367.78 Safari/537.36",
            "Chromium",
            "124.0.6367.78",
            "Linux",
            "",
            Desktop,
            false,
        );
    }

    #[test]
    fn safari_macos() {
        check(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
            "Safari",
            "17.4.1",
            "macOS",
            "10.15.7",
            Desktop,
            false,
        );
    }

    #[test]
    fn firefox_windows() {
        check(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
            "Firefox",
            "125.0",
            "Windows",
            "10",
            Desktop,
            false,
        );
    }

    #[test]
    fn firefox_macos_dotted_version() {
        check(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:125.0) Gecko/20100101 Firefox/125.0",
            "Firefox",
            "125.0",
            "macOS",
            "10.15",
            Desktop,
            false,
        );
    }

    #[test]
    fn firefox_ubuntu() {
        check(
            "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0",
            "Firefox",
            "124.0",
            "Linux",
            "",
            Desktop,
            false,
        );
    }

    #[test]
    fn edge_windows() {
        check(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
            "Edge",
            "124.0.2478.51",
            "Windows",
            "10",
            Desktop,
            false,
        );
    }

    #[test]
    fn edge_legacy_windows() {
        check(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36 Edge/18.19045",
            "Edge",
            "18.19045",
            "Windows",
            "10",
            Desktop,
            false,
        );
    }

    #[test]
    fn opera_windows() {
        check(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 OPR/109.0.0.0",
            "Opera",
            "109.0.0.0",
            "Windows",
            "10",
            Desktop,
            false,
        );
    }

    #[test]
    fn opera_presto() {
        check(
            "Opera/9.80 (Windows NT 6.1; WOW64) Presto/2.12.388 Version/12.18",
            "Opera",
            "12.18",
            "Windows",
            "7",
            Desktop,
            false,
        );
    }

    // --- iOS ---

    #[test]
    fn mobile_safari_iphone() {
        check(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            "Safari",
            "17.4",
            "iOS",
            "17.4",
            Mobile,
            false,
        );
    }

    #[test]
    fn mobile_safari_ipad() {
        check(
            "Mozilla/5.0 (iPad; CPU OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
            "Safari",
            "17.4.1",
            "iOS",
            "17.4.1",
            Tablet,
            false,
        );
    }

    #[test]
    fn mobile_safari_ipod() {
        check(
            "Mozilla/5.0 (iPod touch; CPU iPhone OS 15_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/15.6.1 Mobile/15E148 Safari/604.1",
            "Safari",
            "15.6.1",
            "iOS",
            "15.7",
            Mobile,
            false,
        );
    }

    #[test]
    fn chrome_ios_crios() {
        check(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
            "Chrome",
            "124.0.6367.88",
            "iOS",
            "17.4",
            Mobile,
            false,
        );
    }

    #[test]
    fn firefox_ios_fxios() {
        check(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/125.0 Mobile/15E148 Safari/605.1.15",
            "Firefox",
            "125.0",
            "iOS",
            "17.4",
            Mobile,
            false,
        );
    }

    #[test]
    fn edge_ios() {
        check(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) EdgiOS/124.2478.50 Version/17.0 Mobile/15E148 Safari/604.1",
            "Edge",
            "124.2478.50",
            "iOS",
            "17.4",
            Mobile,
            false,
        );
    }

    #[test]
    fn opera_ios() {
        check(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) OPiOS/16.0.15.124050 Mobile/15E148 Safari/9537.53",
            "Opera",
            "16.0.15.124050",
            "iOS",
            "16.6",
            Mobile,
            false,
        );
    }

    #[test]
    fn ios_wkwebview_without_browser_token() {
        check(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
            "Unknown",
            "",
            "iOS",
            "17.4",
            Mobile,
            false,
        );
    }

    // --- Android ---

    #[test]
    fn chrome_android_reduced_ua() {
        check(
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
            "Chrome",
            "124.0.6367.82",
            "Android",
            "10",
            Mobile,
            false,
        );
    }

    #[test]
    fn chrome_android_tablet() {
        check(
            "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            "Chrome",
            "124.0.0.0",
            "Android",
            "13",
            Tablet,
            false,
        );
    }

    #[test]
    fn android_webview() {
        check(
            "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/AP1A.240405.002; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/123.0.6312.118 Mobile Safari/537.36",
            "Chrome",
            "123.0.6312.118",
            "Android",
            "14",
            Mobile,
            false,
        );
    }

    #[test]
    fn samsung_internet_phone() {
        check(
            "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S901B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
            "Samsung Internet",
            "24.0",
            "Android",
            "13",
            Mobile,
            false,
        );
    }

    #[test]
    fn samsung_internet_tablet() {
        check(
            "Mozilla/5.0 (Linux; Android 12; SM-T870) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Safari/537.36",
            "Samsung Internet",
            "23.0",
            "Android",
            "12",
            Tablet,
            false,
        );
    }

    #[test]
    fn firefox_android() {
        check(
            "Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0",
            "Firefox",
            "125.0",
            "Android",
            "14",
            Mobile,
            false,
        );
    }

    #[test]
    fn edge_android() {
        check(
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36 EdgA/124.0.2478.64",
            "Edge",
            "124.0.2478.64",
            "Android",
            "10",
            Mobile,
            false,
        );
    }

    #[test]
    fn opera_android() {
        check(
            "Mozilla/5.0 (Linux; Android 10; VOG-L29) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36 OPR/81.1.4292.78446",
            "Opera",
            "81.1.4292.78446",
            "Android",
            "10",
            Mobile,
            false,
        );
    }

    #[test]
    fn android_stock_browser_is_not_safari() {
        check(
            "Mozilla/5.0 (Linux; U; Android 4.0.3; ko-kr; LG-L160L Build/IML74K) AppleWebKit/534.30 (KHTML, like Gecko) Version/4.0 Mobile Safari/534.30",
            "Unknown",
            "",
            "Android",
            "4.0.3",
            Mobile,
            false,
        );
    }

    #[test]
    fn cubot_phone_is_not_a_bot() {
        check(
            "Mozilla/5.0 (Linux; Android 10; CUBOT_X30 Build/QP1A.190711.020) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
            "Chrome",
            "124.0.0.0",
            "Android",
            "10",
            Mobile,
            false,
        );
    }

    // --- In-app webviews ---

    #[test]
    fn facebook_ios() {
        check(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/458.0.0.37.98;FBBV/577368431;FBDV/iPhone15,2;FBMD/iPhone;FBSN/iOS;FBSV/17.4.1;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5;FBRV/579876017]",
            "Facebook",
            "458.0.0.37.98",
            "iOS",
            "17.4.1",
            Mobile,
            false,
        );
    }

    #[test]
    fn facebook_android() {
        check(
            "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/AP1A.240405.002; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/123.0.6312.118 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/458.0.0.48.108;]",
            "Facebook",
            "458.0.0.48.108",
            "Android",
            "14",
            Mobile,
            false,
        );
    }

    #[test]
    fn instagram_ios() {
        check(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 326.0.3.25.98 (iPhone14,5; iOS 17_4; en_US; en; scale=3.00; 1170x2532; 590004046)",
            "Instagram",
            "326.0.3.25.98",
            "iOS",
            "17.4",
            Mobile,
            false,
        );
    }

    #[test]
    fn instagram_android() {
        check(
            "Mozilla/5.0 (Linux; Android 14; SM-S918B Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/123.0.6312.118 Mobile Safari/537.36 Instagram 300.0.0.29.110 Android (34/14; 480dpi; 1080x2340; samsung; SM-S918B; dm3q; qcom; en_US; 590004046)",
            "Instagram",
            "300.0.0.29.110",
            "Android",
            "14",
            Mobile,
            false,
        );
    }

    #[test]
    fn tiktok_ios() {
        check(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 musical_ly_34.1.0 JsSdk/2.0 NetType/WIFI Channel/App Store ByteLocale/en Region/US isDarkMode/0 WKWebView/1 RevealType/Dialog BytedanceWebview/d8a21c6",
            "TikTok",
            "34.1.0",
            "iOS",
            "17.4",
            Mobile,
            false,
        );
    }

    #[test]
    fn tiktok_android() {
        check(
            "Mozilla/5.0 (Linux; Android 13; SM-S908U Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/121.0.6167.178 Mobile Safari/537.36 musical_ly_2023303040 JsSdk/1.0 NetType/WIFI Channel/googleplay AppName/musical_ly app_version/33.3.4 ByteLocale/en ByteFullLocale/en Region/US AppId/1233 Spark/1.4.8.3-bugfix AppVersion/33.3.4 BytedanceWebview/d8a21c6",
            "TikTok",
            "33.3.4",
            "Android",
            "13",
            Mobile,
            false,
        );
    }

    #[test]
    fn tiktok_native_client() {
        check(
            "TikTok 26.2.0 rv:262018 (iPhone; iOS 14.4.2; en_US) Cronet",
            "TikTok",
            "26.2.0",
            "iOS",
            "14.4.2",
            Mobile,
            false,
        );
    }

    // --- Bots ---

    #[test]
    fn googlebot_desktop() {
        check(
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Googlebot/2.1; +http://www.google.com/bot.html) Chrome/124.0.6367.155 Safari/537.36",
            "Googlebot",
            "2.1",
            "Unknown",
            "",
            Bot,
            true,
        );
    }

    #[test]
    fn googlebot_smartphone() {
        check(
            "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.155 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Googlebot",
            "2.1",
            "Android",
            "6.0.1",
            Bot,
            true,
        );
    }

    #[test]
    fn bingbot() {
        check(
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "bingbot",
            "2.0",
            "Unknown",
            "",
            Bot,
            true,
        );
    }

    #[test]
    fn ahrefsbot() {
        check(
            "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
            "AhrefsBot",
            "7.0",
            "Unknown",
            "",
            Bot,
            true,
        );
    }

    #[test]
    fn facebookexternalhit() {
        check(
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "facebookexternalhit",
            "1.1",
            "Unknown",
            "",
            Bot,
            true,
        );
    }

    #[test]
    fn twitterbot() {
        check(
            "Twitterbot/1.0",
            "Twitterbot",
            "1.0",
            "Unknown",
            "",
            Bot,
            true,
        );
    }

    #[test]
    fn slackbot() {
        check(
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "Slackbot",
            "",
            "Unknown",
            "",
            Bot,
            true,
        );
    }

    #[test]
    fn curl() {
        check("curl/8.4.0", "curl", "8.4.0", "Unknown", "", Bot, true);
    }

    #[test]
    fn wget() {
        check("Wget/1.21.4", "Wget", "1.21.4", "Unknown", "", Bot, true);
    }

    #[test]
    fn python_requests() {
        check(
            "python-requests/2.31.0",
            "python-requests",
            "2.31.0",
            "Unknown",
            "",
            Bot,
            true,
        );
    }

    #[test]
    fn go_http_client() {
        check(
            "Go-http-client/1.1",
            "Go-http-client",
            "1.1",
            "Unknown",
            "",
            Bot,
            true,
        );
    }

    #[test]
    fn headless_chrome() {
        check(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.6367.60 Safari/537.36",
            "HeadlessChrome",
            "124.0.6367.60",
            "Windows",
            "10",
            Bot,
            true,
        );
    }

    #[test]
    fn generic_bot_word() {
        check(
            "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
            "YandexBot",
            "3.0",
            "Unknown",
            "",
            Bot,
            true,
        );
        check(
            "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
            "Baiduspider",
            "2.0",
            "Unknown",
            "",
            Bot,
            true,
        );
        check(
            "Mozilla/5.0 (compatible; MyCustomCrawler; +https://example.com)",
            "MyCustomCrawler",
            "",
            "Unknown",
            "",
            Bot,
            true,
        );
    }

    #[test]
    fn generic_bot_word_on_a_phone_ua() {
        check(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 14_7_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/14.1.2 Mobile/15E148 Safari/604.1 (Applebot/0.1; +http://www.apple.com/go/applebot)",
            "Applebot",
            "0.1",
            "iOS",
            "14.7.1",
            Bot,
            true,
        );
    }

    // --- Robustness ---

    #[test]
    fn empty_and_garbage_are_unknown() {
        for ua in [
            "",
            " ",
            "-",
            "Mozilla/5.0",
            "asdf qwer zxcv",
            "\0\0\0",
            "/////",
            ";;;(()))",
        ] {
            check(ua, "Unknown", "", "Unknown", "", Unknown, false);
        }
    }

    #[test]
    fn dangling_tokens_do_not_panic() {
        for ua in [
            "Chrome/",
            "Android",
            "Android ",
            "CPU iPhone OS ",
            "iPhone",
            "Windows NT ",
            "CrOS ",
            "Mac OS X ",
            "Instagram ",
            "FBAV/",
            "musical_ly_",
            "Version/",
            "Opera/",
            "curl/",
            "bot/",
            "+bot",
            "Windows NT 99.9",
        ] {
            let _ = parse_user_agent(ua);
        }
        let got = parse_user_agent("Windows NT 99.9");
        assert_eq!(got.os_version, "99.9");
    }

    #[test]
    fn unicode_never_panics() {
        for ua in [
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 ☃ like Mac OS X) Version/17.4 Safari/604.1",
            "Chrome/１２４.0 (Android ７)",
            "日本語のユーザーエージェント",
            "Édg/1.0 Chrome/é",
            "FBAV/💥;",
            "🤖bot🤖",
            "Android\u{0301}",
            "CPU OS 1\u{00A0}2",
        ] {
            let got = parse_user_agent(ua);
            assert_eq!(got.raw, ua);
        }
        let got = parse_user_agent("Chrome/124.0é Safari/1");
        assert_eq!(got.browser_name, "Chrome");
        assert_eq!(got.browser_version, "124.0");
    }

    #[test]
    fn huge_input_is_truncated_on_a_char_boundary() {
        // 1023 ASCII bytes then a 4-byte char straddling the 1024 limit.
        let mut ua = String::from("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/125.0 ");
        while ua.len() < 1023 {
            ua.push('a');
        }
        ua.push('🦀');
        ua.push_str(&"b".repeat(100_000));
        let got = parse_user_agent(&ua);
        assert_eq!(got.raw.len(), 1023);
        assert!(ua.starts_with(&got.raw));
        assert_eq!(got.browser_name, "Firefox");
        assert_eq!(got.os_name, "Windows");

        // Exactly at the limit nothing is cut; one byte over, one byte is cut.
        let exact = "x".repeat(MAX_USER_AGENT_LEN);
        assert_eq!(parse_user_agent(&exact).raw.len(), MAX_USER_AGENT_LEN);
        let over = "x".repeat(MAX_USER_AGENT_LEN + 1);
        assert_eq!(parse_user_agent(&over).raw.len(), MAX_USER_AGENT_LEN);

        // Tokens past the limit are not seen.
        let mut late = "z".repeat(MAX_USER_AGENT_LEN);
        late.push_str(" Googlebot/2.1");
        let got = parse_user_agent(&late);
        assert!(!got.is_bot);

        // Multi-byte chars all the way: every cut lands on a boundary.
        for ch in ['é', '€', '🦀'] {
            let s: String = core::iter::repeat_n(ch, 2000).collect();
            let got = parse_user_agent(&s);
            assert!(got.raw.len() <= MAX_USER_AGENT_LEN);
            assert!(got.raw.len() > MAX_USER_AGENT_LEN - 4);
            assert!(got.raw.chars().all(|c| c == ch));
        }
    }

    #[test]
    fn every_prefix_and_byte_cut_is_safe() {
        // Parse every char-boundary prefix of a rich UA, which exercises dangling tokens.
        let uas = [
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/458.0.0.37.98;]",
            "Mozilla/5.0 (Linux; Android 13; SM-S908U Build/TP1A.220624.014; wv) AppleWebKit/537.36 Chrome/121.0 Mobile Safari/537.36 musical_ly_2023303040 app_version/33.3.4 BytedanceWebview/d8a21c6",
            "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 Chrome/124.0.0.0 Safari/537.36 Édg/☃",
        ];
        let mut seen = Vec::new();
        for ua in uas {
            for (i, _) in ua.char_indices() {
                if let Some(prefix) = ua.get(..i) {
                    seen.push(parse_user_agent(prefix).browser_name);
                }
            }
        }
        assert!(seen.iter().any(|b| b == "Facebook"));
        assert!(seen.iter().any(|b| b == "TikTok"));
    }

    use proptest::strategy::Strategy;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// The pair-table scan (eight bytes at a time) finds each token's first occurrence
        /// where a plain search finds it.
        #[test]
        fn scan_finds_what_a_search_finds(
            pieces in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(TOKENS.to_vec()).prop_map(String::from),
                    proptest::sample::select(KNOWN_BOTS.iter().map(|b| b.0).collect::<Vec<_>>())
                        .prop_map(String::from),
                    proptest::sample::select(alloc::vec!["BOT", "Crawler", "sPiDeR", "cubot"])
                        .prop_map(String::from),
                    // Tokens cut short, with one byte changed, or in another case: near
                    // misses of the masked compare (and tokens running into the end).
                    (
                        proptest::sample::select(
                            TOKENS.iter().copied().chain(KNOWN_BOTS.iter().map(|b| b.0)).collect::<Vec<_>>(),
                        ),
                        0usize..20,
                        proptest::sample::select(alloc::vec![0u8, b' ', b'/', b'@', b'[', b'`', b'{', 0xc3]),
                        0u8..4,
                    )
                        .prop_map(|(t, at, byte, how)| {
                            let mut b = t.as_bytes().to_vec();
                            let at = at % b.len();
                            match how {
                                0 => b.truncate(at.max(1)),
                                1 => b[at] = if byte == 0xc3 { b'e' } else { byte },
                                2 => b.make_ascii_uppercase(),
                                _ => b.make_ascii_lowercase(),
                            }
                            String::from_utf8(b).unwrap_or_default()
                        }),
                    "[ a-zA-Z0-9/;().é_-]{0,9}",
                ],
                0..12,
            ),
        ) {
            let ua: String = pieces.concat();
            let ua = truncate(&ua, MAX_USER_AGENT_LEN);
            let scan = Scan::new(ua);
            for (k, token) in TOKENS.iter().enumerate() {
                let want = ua.find(token);
                proptest::prop_assert_eq!(scan.found >> k & 1 == 1, want.is_some(), "{}", token);
                if let Some(at) = want {
                    proptest::prop_assert_eq!(usize::from(scan.at[k]), at, "{}", token);
                }
            }
            for k in 0..CI_TOKEN_COUNT {
                let token = ci_token(k).unwrap_or("");
                let want = find_ci(ua, token);
                proptest::prop_assert_eq!(scan.ci_found >> k & 1 == 1, want.is_some(), "{}", token);
                if let Some(at) = want {
                    proptest::prop_assert_eq!(usize::from(scan.ci_at[k]), at, "{}", token);
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// The bytewise prefixes are the char-by-char ones they replace.
        #[test]
        fn take_while_is_the_char_scan(s in "[0-9a-zA-Z._/ -]{0,12}[é€😀\u{0}-\u{ff}]{0,2}[0-9a-z._-]{0,6}") {
            fn by_chars(s: &str, keep: impl Fn(char) -> bool) -> &str {
                let end = s.find(|c: char| !keep(c)).unwrap_or(s.len());
                &s[..end]
            }
            proptest::prop_assert_eq!(
                version_at(&s),
                by_chars(&s, |c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
            );
            proptest::prop_assert_eq!(
                take_while(&s, |b| b.is_ascii_digit() || b == b'.' || b == b'_'),
                by_chars(&s, |c| c.is_ascii_digit() || c == '.' || c == '_')
            );
            proptest::prop_assert_eq!(
                take_while(&s, |b| b.is_ascii_digit() || b == b'.'),
                by_chars(&s, |c| c.is_ascii_digit() || c == '.')
            );
        }
    }

    #[test]
    fn serializes_device_type_lowercase() {
        let ua = parse_user_agent("curl/8.4.0");
        let json = serde_json::to_string(&ua).unwrap_or_default();
        assert!(json.contains("\"device_type\":\"bot\""), "{json}");
        let back: UserAgent = serde_json::from_str(&json).unwrap_or_else(|_| parse_user_agent(""));
        assert_eq!(back, ua);
    }
}
