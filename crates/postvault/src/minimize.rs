//! Minimization at collection (R2): accept only the fields the pack declares
//! for a category and purpose, check each value's type, and apply transforms
//! (IP prefixes, card last four, rounded coordinates). The same transforms run
//! again on every read for a purpose outside a field's `keep_for`.
//!
//! Error messages name the field and the rule, never the value.

use std::net::IpAddr;
use std::str::FromStr;

use base64::Engine as _;
use postvault_policy::{Category, FieldSpec, FieldType, PurposeIx, Transform};
use serde_json::{Map, Value};

/// Why a field was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Stable code: `field_not_declared`, `field_not_for_purpose`,
    /// `field_missing`, `field_type`, `field_too_long`, `field_range`.
    pub code: &'static str,
    pub field: String,
    pub message: String,
}

fn err(code: &'static str, field: &str, message: String) -> FieldError {
    FieldError {
        code,
        field: field.to_string(),
        message,
    }
}

const DEFAULT_STRING_MAX: usize = 200;
const DEFAULT_BYTES_MAX: usize = 1 << 20;

/// Minimized fields: (index into the category's fields, value), in
/// declaration order.
pub type Minimized = Vec<(usize, Value)>;

/// The value of field `ix` in `fields`, if present.
pub fn field_value(fields: &Minimized, ix: usize) -> Option<&Value> {
    fields.iter().find(|(i, _)| *i == ix).map(|(_, v)| v)
}

/// Writes `{"name": value, ...}` for minimized fields.
pub fn write_fields(category: &Category, fields: &Minimized, out: &mut Vec<u8>) {
    out.push(b'{');
    for (n, (ix, v)) in fields.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        let name = category.fields.get(*ix).map_or("", |f| f.name.as_str());
        // Writing JSON into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, name);
        out.push(b':');
        let _ = serde_json::to_writer(&mut *out, v);
    }
    out.push(b'}');
}

/// The `fields` object of an input line, in input order, without building
/// a hash map (duplicate keys are rejected by [`minimize`]).
#[derive(Debug, Default)]
pub struct InputFields(pub Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for InputFields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = InputFields;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of fields")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<InputFields, A::Error> {
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(8));
                while let Some((k, v)) = m.next_entry::<String, Value>()? {
                    out.push((k, v));
                }
                Ok(InputFields(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Checks and transforms `fields` for collecting `category` for `purpose`.
/// Returns the minimized fields in declaration order.
pub fn minimize(
    category: &Category,
    purpose: PurposeIx,
    fields: InputFields,
) -> Result<Minimized, FieldError> {
    let mut slots: Vec<Option<Value>> = vec![None; category.fields.len()];
    for (name, value) in fields.0 {
        match category.field(&name) {
            None => {
                let shown = shown_key(&name);
                return Err(err(
                    "field_not_declared",
                    if shown.starts_with('`') { &name } else { "?" },
                    format!(
                        "field {shown} is not declared for category `{}` (R2: only declared fields are collected)",
                        category.id
                    ),
                ));
            }
            Some((_, spec)) if !spec.collectable_for(purpose) => {
                return Err(err(
                    "field_not_for_purpose",
                    &name,
                    format!(
                        "field `{name}` of category `{}` may not be collected for this purpose (R2: minimization)",
                        category.id
                    ),
                ));
            }
            Some((ix, _)) => match slots.get_mut(ix) {
                Some(slot @ None) => *slot = Some(value),
                _ => {
                    return Err(err(
                        "field_duplicate",
                        &name,
                        format!("field `{name}` is given twice"),
                    ));
                }
            },
        }
    }
    let mut out = Vec::with_capacity(slots.len());
    for ((ix, spec), slot) in category.fields.iter().enumerate().zip(slots) {
        match slot {
            None | Some(Value::Null) if spec.required => {
                return Err(err(
                    "field_missing",
                    &spec.name,
                    format!(
                        "required field `{}` of category `{}` is missing",
                        spec.name, category.id
                    ),
                ));
            }
            None | Some(Value::Null) => {}
            Some(v) => {
                let v = check(spec, v)?;
                let v = match spec.transformed_for(purpose) {
                    Some(t) => transform(t, v),
                    None => v,
                };
                out.push((ix, v));
            }
        }
    }
    Ok(out)
}

/// How an input key is shown in a message: in backticks if it looks like an
/// identifier, otherwise not at all (a key could be a misplaced value).
pub fn shown_key(key: &str) -> String {
    let ident = !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ident {
        format!("`{key}`")
    } else {
        "(a key that is not an identifier)".to_string()
    }
}

/// Whether [`transform_for_read`] changes anything of `category` for
/// `purpose`: if not, a read passes the sealed fields on as they are.
pub fn transforms_on_read(category: &Category, purpose: PurposeIx) -> bool {
    category
        .fields
        .iter()
        .any(|spec| spec.transformed_for(purpose).is_some())
}

/// Applies read-time transforms for `purpose` to stored fields: exactly
/// where [`transforms_on_read`] says there are some.
pub fn transform_for_read(
    category: &Category,
    purpose: PurposeIx,
    fields: &mut Map<String, Value>,
) {
    for spec in &category.fields {
        if let Some(t) = spec.transformed_for(purpose)
            && let Some(v) = fields.remove(&spec.name)
        {
            fields.insert(spec.name.clone(), transform(t, v));
        }
    }
}

fn type_err(spec: &FieldSpec, what: &str) -> FieldError {
    err(
        "field_type",
        &spec.name,
        format!("field `{}` must be {what}", spec.name),
    )
}

fn string<'a>(spec: &FieldSpec, v: &'a Value, what: &str) -> Result<&'a str, FieldError> {
    v.as_str().ok_or_else(|| type_err(spec, what))
}

fn check(spec: &FieldSpec, v: Value) -> Result<Value, FieldError> {
    let name = spec.name.as_str();
    let max_chars = |s: &str, default: usize| {
        let max = spec.max.unwrap_or(default);
        if s.chars().count() > max {
            Err(err(
                "field_too_long",
                name,
                format!("field `{name}` is longer than {max} characters"),
            ))
        } else {
            Ok(())
        }
    };
    match &spec.kind {
        FieldType::String => {
            let s = string(spec, &v, "a string")?;
            max_chars(s, DEFAULT_STRING_MAX)?;
            if s.chars().any(char::is_control) {
                return Err(type_err(spec, "a string without control characters"));
            }
            Ok(v)
        }
        FieldType::Email => {
            let s = string(spec, &v, "an email address")?;
            max_chars(s, 254)?;
            let ok = s.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            });
            if !ok {
                return Err(type_err(spec, "an email address"));
            }
            Ok(v)
        }
        FieldType::Phone => {
            let s = string(spec, &v, "a phone number")?;
            let digits = s.strip_prefix('+').unwrap_or(s);
            if !(10..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(type_err(spec, "a phone number of 10 to 15 digits"));
            }
            Ok(v)
        }
        FieldType::Zip => {
            let s = string(spec, &v, "a ZIP code")?;
            let b = s.as_bytes();
            let ok = match b.len() {
                5 => b.iter().all(u8::is_ascii_digit),
                10 => {
                    b[5] == b'-'
                        && b[..5].iter().all(u8::is_ascii_digit)
                        && b[6..].iter().all(u8::is_ascii_digit)
                }
                _ => false,
            };
            if !ok {
                return Err(type_err(spec, "a ZIP code (12345 or 12345-6789)"));
            }
            Ok(v)
        }
        FieldType::State => {
            let s = string(spec, &v, "a state code")?;
            if s.len() != 2 || !s.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(type_err(spec, "a two-letter state code"));
            }
            Ok(v)
        }
        FieldType::Date => {
            let s = string(spec, &v, "a date")?;
            if !valid_date(s) {
                return Err(type_err(spec, "a date (YYYY-MM-DD)"));
            }
            Ok(v)
        }
        FieldType::DateTime => {
            let s = string(spec, &v, "a date-time")?;
            if !valid_datetime(s) {
                return Err(type_err(spec, "an RFC 3339 date-time"));
            }
            Ok(v)
        }
        FieldType::Ip => {
            let s = string(spec, &v, "an IP address")?;
            IpAddr::from_str(s).map_err(|_| type_err(spec, "an IPv4 or IPv6 address"))?;
            Ok(v)
        }
        FieldType::CardNumber => {
            let s = string(spec, &v, "a card number")?;
            if !(13..=19).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_digit()) || !luhn(s) {
                return Err(type_err(
                    spec,
                    "a card number (13 to 19 digits, Luhn-valid)",
                ));
            }
            Ok(v)
        }
        FieldType::Money => {
            let cents = money_cents(&v).ok_or_else(|| {
                type_err(spec, "an amount with at most two decimals, like \"12.50\"")
            })?;
            if let Some(max) = spec.max_value
                && cents as f64 > (max * 100.0).round()
            {
                return Err(err(
                    "field_range",
                    name,
                    format!("field `{name}` is above its maximum {max:.2}"),
                ));
            }
            Ok(Value::String(format!("{}.{:02}", cents / 100, cents % 100)))
        }
        FieldType::Integer => v
            .as_i64()
            .map(Value::from)
            .ok_or_else(|| type_err(spec, "a whole number")),
        FieldType::Bool => v
            .as_bool()
            .map(Value::Bool)
            .ok_or_else(|| type_err(spec, "true or false")),
        FieldType::Lat | FieldType::Lon => {
            let limit = if spec.kind == FieldType::Lat {
                90.0
            } else {
                180.0
            };
            let x = v
                .as_f64()
                .filter(|x| x.is_finite() && x.abs() <= limit)
                .ok_or_else(|| type_err(spec, &format!("a number from -{limit} to {limit}")))?;
            Ok(Value::from(x))
        }
        FieldType::Imb => {
            let s = string(spec, &v, "an IMb")?;
            if ![20, 25, 29, 31].contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(type_err(spec, "an IMb of 20, 25, 29 or 31 digits"));
            }
            Ok(v)
        }
        FieldType::Digits => {
            let s = string(spec, &v, "a string of digits")?;
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(type_err(spec, "a string of digits"));
            }
            max_chars(s, 64)?;
            Ok(v)
        }
        FieldType::Hex => {
            let s = string(spec, &v, "lowercase hex")?;
            if !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(type_err(spec, "lowercase hex"));
            }
            max_chars(s, 128)?;
            Ok(v)
        }
        FieldType::Enum(values) => {
            let s = string(spec, &v, "one of its values")?;
            if !values.iter().any(|x| x == s) {
                return Err(type_err(spec, &format!("one of: {}", values.join(", "))));
            }
            Ok(v)
        }
        FieldType::Bytes => {
            let s = string(spec, &v, "base64")?;
            let max = spec.max.unwrap_or(DEFAULT_BYTES_MAX);
            if s.len() > (max / 3 + 1) * 4 {
                return Err(err(
                    "field_too_long",
                    name,
                    format!("field `{name}` is larger than {max} bytes"),
                ));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| type_err(spec, "standard base64"))?;
            if bytes.len() > max {
                return Err(err(
                    "field_too_long",
                    name,
                    format!("field `{name}` is larger than {max} bytes"),
                ));
            }
            Ok(v)
        }
    }
}

fn transform(t: Transform, v: Value) -> Value {
    match t {
        Transform::IpPrefix => match v.as_str().and_then(|s| IpAddr::from_str(s).ok()) {
            Some(IpAddr::V4(ip)) => {
                let o = ip.octets();
                Value::String(format!("{}.{}.{}.0/24", o[0], o[1], o[2]))
            }
            Some(IpAddr::V6(ip)) => {
                let s = ip.segments();
                Value::String(format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2]))
            }
            // Already a prefix (or not an address): leave it.
            None => v,
        },
        Transform::CardLast4 => match v.as_str() {
            Some(s) if s.len() >= 4 => {
                let mut m = Map::new();
                m.insert("brand".into(), Value::String(card_brand(s).into()));
                m.insert("last4".into(), Value::String(s[s.len() - 4..].to_string()));
                Value::Object(m)
            }
            _ => v,
        },
        Transform::GeoRound => match v.as_f64() {
            Some(x) => Value::from((x * 1000.0).round() / 1000.0),
            None => v,
        },
    }
}

fn card_brand(s: &str) -> &'static str {
    let p2: u32 = s.get(..2).and_then(|x| x.parse().ok()).unwrap_or(0);
    let p4: u32 = s.get(..4).and_then(|x| x.parse().ok()).unwrap_or(0);
    let p3: u32 = s.get(..3).and_then(|x| x.parse().ok()).unwrap_or(0);
    if s.starts_with('4') {
        "visa"
    } else if (51..=55).contains(&p2) || (2221..=2720).contains(&p4) {
        "mastercard"
    } else if p2 == 34 || p2 == 37 {
        "amex"
    } else if p4 == 6011 || p2 == 65 || (644..=649).contains(&p3) {
        "discover"
    } else {
        "other"
    }
}

fn luhn(s: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in s.bytes().rev().enumerate() {
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

pub(crate) fn money_cents(v: &Value) -> Option<u64> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
    if whole.is_empty()
        || whole.len() > 12
        || frac.len() > 2
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let w: u64 = whole.parse().ok()?;
    let f: u64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<u64>().ok()? * 10,
        _ => frac.parse().ok()?,
    };
    Some(w * 100 + f)
}

fn num(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

pub(crate) fn valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    match (num(&s[..4]), num(&s[5..7]), num(&s[8..])) {
        (Some(y), Some(m), Some(d)) => y >= 1 && postvault_time::is_date(y.into(), m, d),
        _ => false,
    }
}

pub(crate) fn valid_datetime(s: &str) -> bool {
    if s.len() < 20 || !s.is_char_boundary(10) || !valid_date(&s[..10]) {
        return false;
    }
    let rest = &s[10..];
    let Some(rest) = rest.strip_prefix('T').or_else(|| rest.strip_prefix('t')) else {
        return false;
    };
    if rest.len() < 9 || !rest.is_char_boundary(8) {
        return false;
    }
    let (hms, mut tz) = rest.split_at(8);
    let hb = hms.as_bytes();
    if hb[2] != b':' || hb[5] != b':' {
        return false;
    }
    let ok_time = matches!(
        (num(&hms[..2]), num(&hms[3..5]), num(&hms[6..])),
        (Some(h), Some(m), Some(sec)) if h < 24 && m < 60 && sec <= 60
    );
    if !ok_time {
        return false;
    }
    if let Some(frac) = tz.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return false;
        }
        tz = &frac[n..];
    }
    match tz {
        "Z" | "z" => true,
        _ => {
            let b = tz.as_bytes();
            b.len() == 6
                && (b[0] == b'+' || b[0] == b'-')
                && b[3] == b':'
                && num(&tz[1..3]).is_some_and(|h| h < 24)
                && num(&tz[4..]).is_some_and(|m| m < 60)
        }
    }
}
