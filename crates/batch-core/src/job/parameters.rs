//! Job parameters: typed values, their Spring Batch storage and `toString` forms, and the
//! command-line notation (Spring Batch 5/6 `name=value,type,identifying` and the 4.x key markers).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike, Utc};

/// Errors raised while parsing parameter types, values and command-line arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParameterError {
    /// The argument has no `=` between name and value.
    #[error("invalid job parameter {0:?}: expected name=value")]
    MissingEquals(String),
    /// The argument's name is empty (after removing any 4.x key markers).
    #[error("invalid job parameter {0:?}: the parameter name is empty")]
    EmptyName(String),
    /// The type name is neither a supported Java class nor a known alias.
    #[error(
        "unknown job parameter type {0:?} (expected one of java.lang.String, java.lang.Long, \
         java.lang.Double, java.util.Date, java.time.LocalDate, java.time.LocalDateTime)"
    )]
    UnknownType(String),
    /// A value that does not parse as its type.
    #[error("{value:?} is not a valid {java_type}{}", hint_suffix(.hint))]
    InvalidValue {
        /// The text that failed to parse.
        value: String,
        /// The Java class it should have been.
        java_type: &'static str,
        /// The expected format, or "" when there is nothing to add.
        hint: &'static str,
    },
    /// A command-line parameter whose value does not parse as its type.
    #[error("parameter '{name}': {value:?} is not a valid {java_type}{}", hint_suffix(.hint))]
    InvalidParameter {
        /// The parameter name.
        name: String,
        /// The text that failed to parse.
        value: String,
        /// The Java class it should have been.
        java_type: &'static str,
        /// The expected format, or "" when there is nothing to add.
        hint: &'static str,
    },
    /// A parameter marked non-identifying with a leading `-` but also given `,true`.
    #[error(
        "parameter '{0}': the leading '-' marks it non-identifying, but its value says identifying=true"
    )]
    ConflictingIdentifying(String),
    /// The same parameter name appears more than once in one argument list.
    #[error("parameter '{0}' is given more than once")]
    Duplicate(String),
}

fn hint_suffix(hint: &str) -> String {
    if hint.is_empty() {
        String::new()
    } else {
        format!(" (expected {hint})")
    }
}

/// The Java types a parameter can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParameterType {
    /// `java.lang.String`
    String,
    /// `java.lang.Long`
    Long,
    /// `java.lang.Double`
    Double,
    /// `java.util.Date`
    Date,
    /// `java.time.LocalDate`
    LocalDate,
    /// `java.time.LocalDateTime`
    LocalDateTime,
}

impl ParameterType {
    const ALL: [ParameterType; 6] = [
        ParameterType::String,
        ParameterType::Long,
        ParameterType::Double,
        ParameterType::Date,
        ParameterType::LocalDate,
        ParameterType::LocalDateTime,
    ];

    /// The fully-qualified Java class name, as stored in `PARAMETER_TYPE`.
    pub fn java_type(self) -> &'static str {
        match self {
            ParameterType::String => "java.lang.String",
            ParameterType::Long => "java.lang.Long",
            ParameterType::Double => "java.lang.Double",
            ParameterType::Date => "java.util.Date",
            ParameterType::LocalDate => "java.time.LocalDate",
            ParameterType::LocalDateTime => "java.time.LocalDateTime",
        }
    }

    /// The short alias (`string`, `long`, `double`, `date`, `localdate`, `localdatetime`).
    pub fn alias(self) -> &'static str {
        match self {
            ParameterType::String => "string",
            ParameterType::Long => "long",
            ParameterType::Double => "double",
            ParameterType::Date => "date",
            ParameterType::LocalDate => "localdate",
            ParameterType::LocalDateTime => "localdatetime",
        }
    }

    /// Resolves a Java class name or short alias, case-insensitively. The 4.x type codes
    /// (`STRING`, `LONG`, `DOUBLE`, `DATE`) are aliases too.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| {
            name.eq_ignore_ascii_case(t.java_type()) || name.eq_ignore_ascii_case(t.alias())
        })
    }

    fn hint(self) -> &'static str {
        match self {
            ParameterType::String | ParameterType::Long | ParameterType::Double => "",
            ParameterType::Date => "an ISO-8601 instant such as 2023-10-06T20:54:07Z",
            ParameterType::LocalDate => "yyyy-MM-dd",
            ParameterType::LocalDateTime => "yyyy-MM-ddTHH:mm[:ss[.SSS]]",
        }
    }

    /// Parses a value of this type from its stored or command-line text.
    pub fn parse_value(self, value: &str) -> Result<ParameterValue, ParameterError> {
        let parsed = match self {
            ParameterType::String => Some(ParameterValue::String(value.to_owned())),
            ParameterType::Long => value.trim().parse().ok().map(ParameterValue::Long),
            ParameterType::Double => value.trim().parse().ok().map(ParameterValue::Double),
            ParameterType::Date => parse_date(value.trim()).map(ParameterValue::Date),
            ParameterType::LocalDate => {
                parse_local_date(value.trim()).map(ParameterValue::LocalDate)
            }
            ParameterType::LocalDateTime => {
                parse_local_date_time(value.trim()).map(ParameterValue::LocalDateTime)
            }
        };
        parsed.ok_or_else(|| ParameterError::InvalidValue {
            value: value.to_owned(),
            java_type: self.java_type(),
            hint: self.hint(),
        })
    }
}

impl fmt::Display for ParameterType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.java_type())
    }
}

/// A typed parameter value, with the Java type Spring Batch records for it.
#[derive(Debug, Clone, PartialEq)]
pub enum ParameterValue {
    /// `java.lang.String`
    String(String),
    /// `java.lang.Long`
    Long(i64),
    /// `java.lang.Double`
    Double(f64),
    /// `java.util.Date` (millisecond precision; finer digits are ignored when rendering)
    Date(DateTime<Utc>),
    /// `java.time.LocalDate`
    LocalDate(NaiveDate),
    /// `java.time.LocalDateTime`
    LocalDateTime(NaiveDateTime),
}

impl ParameterValue {
    /// The value's type.
    pub fn parameter_type(&self) -> ParameterType {
        match self {
            ParameterValue::String(_) => ParameterType::String,
            ParameterValue::Long(_) => ParameterType::Long,
            ParameterValue::Double(_) => ParameterType::Double,
            ParameterValue::Date(_) => ParameterType::Date,
            ParameterValue::LocalDate(_) => ParameterType::LocalDate,
            ParameterValue::LocalDateTime(_) => ParameterType::LocalDateTime,
        }
    }

    /// The Java class name stored in `BATCH_JOB_EXECUTION_PARAMS.PARAMETER_TYPE`.
    pub fn java_type(&self) -> &'static str {
        self.parameter_type().java_type()
    }

    /// `PARAMETER_VALUE` exactly as Spring Batch 5/6 stores it (its conversion service):
    /// ISO_INSTANT for `Date`, ISO_LOCAL_DATE(_TIME) for the `java.time` types.
    pub fn to_stored_string(&self) -> String {
        match self {
            ParameterValue::String(s) => s.clone(),
            ParameterValue::Long(v) => v.to_string(),
            ParameterValue::Double(v) => java_double_to_string(*v),
            ParameterValue::Date(d) => iso_instant(d),
            ParameterValue::LocalDate(d) => iso_local_date(*d),
            ParameterValue::LocalDateTime(dt) => iso_local_date_time(*dt),
        }
    }

    /// Java's `value.toString()`, as the job key uses it. A `Date` is rendered in UTC.
    pub fn to_key_string(&self) -> String {
        match self {
            ParameterValue::String(s) => s.clone(),
            ParameterValue::Long(v) => v.to_string(),
            ParameterValue::Double(v) => java_double_to_string(*v),
            ParameterValue::Date(d) => java_date_to_string(d),
            ParameterValue::LocalDate(d) => iso_local_date(*d),
            ParameterValue::LocalDateTime(dt) => java_local_date_time_to_string(*dt),
        }
    }

    /// Reads a stored `(PARAMETER_TYPE, PARAMETER_VALUE)` pair back. `type_name` is a Java
    /// class name, a short alias or a 4.x type code, case-insensitive.
    pub fn parse(type_name: &str, value: &str) -> Result<Self, ParameterError> {
        ParameterType::from_name(type_name)
            .ok_or_else(|| ParameterError::UnknownType(type_name.to_owned()))?
            .parse_value(value)
    }
}

impl fmt::Display for ParameterValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_stored_string())
    }
}

/// One job parameter: a typed value and whether it identifies the job instance.
#[derive(Debug, Clone, PartialEq)]
pub struct JobParameter {
    /// The typed value.
    pub value: ParameterValue,
    /// Whether the parameter is part of the job key.
    pub identifying: bool,
}

impl JobParameter {
    /// A parameter with the given value and flag.
    pub fn new(value: ParameterValue, identifying: bool) -> Self {
        Self { value, identifying }
    }

    /// An identifying `String` parameter.
    pub fn string(v: impl Into<String>) -> Self {
        Self::new(ParameterValue::String(v.into()), true)
    }

    /// An identifying `Long` parameter.
    pub fn long(v: i64) -> Self {
        Self::new(ParameterValue::Long(v), true)
    }

    /// An identifying `Double` parameter.
    pub fn double(v: f64) -> Self {
        Self::new(ParameterValue::Double(v), true)
    }

    /// An identifying `Date` parameter, truncated to milliseconds like `java.util.Date`.
    pub fn date(v: DateTime<Utc>) -> Self {
        Self::new(ParameterValue::Date(truncate_to_millis(v)), true)
    }

    /// An identifying `LocalDate` parameter.
    pub fn local_date(v: NaiveDate) -> Self {
        Self::new(ParameterValue::LocalDate(v), true)
    }

    /// An identifying `LocalDateTime` parameter.
    pub fn local_date_time(v: NaiveDateTime) -> Self {
        Self::new(ParameterValue::LocalDateTime(v), true)
    }

    /// The same parameter, marked non-identifying.
    pub fn non_identifying(self) -> Self {
        Self {
            identifying: false,
            ..self
        }
    }

    /// Spring Batch 5/6 command-line encoding of the value: `value,fqcn,true|false`.
    /// [`parse_argument`] reads `name=` followed by this back to the same parameter.
    pub fn encode(&self) -> String {
        format!(
            "{},{},{}",
            self.value.to_stored_string(),
            self.value.java_type(),
            self.identifying
        )
    }
}

/// Parameters of a job execution, ordered by name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobParameters {
    parameters: BTreeMap<String, JobParameter>,
}

impl JobParameters {
    /// No parameters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a parameter, returning the one it replaced.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        parameter: JobParameter,
    ) -> Option<JobParameter> {
        self.parameters.insert(name.into(), parameter)
    }

    /// Builder form of [`insert`](Self::insert).
    pub fn with(mut self, name: impl Into<String>, parameter: JobParameter) -> Self {
        self.insert(name, parameter);
        self
    }

    /// Removes a parameter, returning it.
    pub fn remove(&mut self, name: &str) -> Option<JobParameter> {
        self.parameters.remove(name)
    }

    /// The parameter with this name.
    pub fn get(&self, name: &str) -> Option<&JobParameter> {
        self.parameters.get(name)
    }

    /// The value of a `String` parameter (`None` if absent or of another type).
    pub fn get_string(&self, name: &str) -> Option<&str> {
        match self.get(name).map(|p| &p.value) {
            Some(ParameterValue::String(s)) => Some(s),
            _ => None,
        }
    }

    /// The value of a `Long` parameter (`None` if absent or of another type).
    pub fn get_long(&self, name: &str) -> Option<i64> {
        match self.get(name).map(|p| &p.value) {
            Some(ParameterValue::Long(v)) => Some(*v),
            _ => None,
        }
    }

    /// Whether a parameter with this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.parameters.contains_key(name)
    }

    /// The parameters in name order (Rust `str` order).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &JobParameter)> {
        self.parameters.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The number of parameters.
    pub fn len(&self) -> usize {
        self.parameters.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.parameters.is_empty()
    }

    /// Only the identifying parameters.
    pub fn identifying(&self) -> JobParameters {
        self.parameters
            .iter()
            .filter(|(_, p)| p.identifying)
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect()
    }

    /// These parameters with `overrides` added; on a name clash the override wins.
    pub fn merge(&self, overrides: &JobParameters) -> JobParameters {
        let mut merged = self.clone();
        for (name, p) in &overrides.parameters {
            merged.parameters.insert(name.clone(), p.clone());
        }
        merged
    }

    /// Parses command-line arguments with [`parse_argument`]; a repeated name is an error.
    pub fn parse_args<I, S>(args: I) -> Result<Self, ParameterError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut parameters = JobParameters::new();
        for arg in args {
            let (name, parameter) = parse_argument(arg.as_ref())?;
            if parameters.contains(&name) {
                return Err(ParameterError::Duplicate(name));
            }
            parameters.insert(name, parameter);
        }
        Ok(parameters)
    }
}

impl FromIterator<(String, JobParameter)> for JobParameters {
    fn from_iter<T: IntoIterator<Item = (String, JobParameter)>>(iter: T) -> Self {
        Self {
            parameters: iter.into_iter().collect(),
        }
    }
}

impl<'a> IntoIterator for &'a JobParameters {
    type Item = (&'a String, &'a JobParameter);
    type IntoIter = std::collections::btree_map::Iter<'a, String, JobParameter>;

    fn into_iter(self) -> Self::IntoIter {
        self.parameters.iter()
    }
}

/// Parses one command-line argument in Spring Batch's notation.
///
/// * `name=value` is an identifying `String`.
/// * `name=value,type` and `name=value,type,true|false` (Spring Batch 5/6), where `type` is a
///   Java class name or alias (see [`ParameterType::from_name`]). The trailing part is only
///   read as a type when it names a known type (and the flag is `true`/`false`); otherwise
///   the whole value, commas included, is a `String`.
/// * Spring Batch 4 key markers: a leading `-` makes the parameter non-identifying, a leading
///   `+` is dropped, and a `(string)`, `(long)`, `(double)` or `(date)` suffix gives the type.
///   With such a suffix the value is taken literally; `(date)` takes `yyyy/MM/dd` (midnight
///   UTC) or an ISO-8601 instant.
pub fn parse_argument(arg: &str) -> Result<(String, JobParameter), ParameterError> {
    let (raw_name, raw_value) = arg
        .split_once('=')
        .ok_or_else(|| ParameterError::MissingEquals(arg.to_owned()))?;

    let (name, marked_non_identifying) = if let Some(rest) = raw_name.strip_prefix('-') {
        (rest, true)
    } else if let Some(rest) = raw_name.strip_prefix('+') {
        (rest, false)
    } else {
        (raw_name, false)
    };
    let (name, v4_type) = strip_v4_type_suffix(name);
    if name.is_empty() {
        return Err(ParameterError::EmptyName(arg.to_owned()));
    }

    let (text, ty, identifying) = match v4_type {
        Some(ty) => (raw_value, ty, !marked_non_identifying),
        None => {
            let (text, ty, flag) = split_typed_value(raw_value);
            let identifying = match (marked_non_identifying, flag) {
                (true, Some(true)) => {
                    return Err(ParameterError::ConflictingIdentifying(name.to_owned()));
                }
                (true, _) => false,
                (false, flag) => flag.unwrap_or(true),
            };
            (text, ty, identifying)
        }
    };

    let value = ty.parse_value(text).map_err(|e| match e {
        ParameterError::InvalidValue {
            value,
            java_type,
            hint,
        } => ParameterError::InvalidParameter {
            name: name.to_owned(),
            value,
            java_type,
            hint: if v4_type == Some(ParameterType::Date) {
                "yyyy/MM/dd"
            } else {
                hint
            },
        },
        other => other,
    })?;
    Ok((name.to_owned(), JobParameter::new(value, identifying)))
}

/// Splits a 4.x `(type)` suffix off a parameter name.
fn strip_v4_type_suffix(name: &str) -> (&str, Option<ParameterType>) {
    const SUFFIXES: [(&str, ParameterType); 4] = [
        ("(string)", ParameterType::String),
        ("(long)", ParameterType::Long),
        ("(double)", ParameterType::Double),
        ("(date)", ParameterType::Date),
    ];
    for (suffix, ty) in SUFFIXES {
        if name.len() >= suffix.len() {
            let split = name.len() - suffix.len();
            if name.is_char_boundary(split) && name[split..].eq_ignore_ascii_case(suffix) {
                return (&name[..split], Some(ty));
            }
        }
    }
    (name, None)
}

/// Splits `value[,type[,identifying]]`, reading the trailing parts only when they name a known
/// type (and a `true`/`false` flag).
fn split_typed_value(value: &str) -> (&str, ParameterType, Option<bool>) {
    if let Some((head, last)) = value.rsplit_once(',') {
        if let Some((head2, middle)) = head.rsplit_once(',')
            && let Some(ty) = ParameterType::from_name(middle)
            && let Some(flag) = parse_flag(last)
        {
            return (head2, ty, Some(flag));
        }
        if let Some(ty) = ParameterType::from_name(last) {
            return (head, ty, None);
        }
    }
    (value, ParameterType::String, None)
}

fn parse_flag(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

// ----------------------------------------------------------------------------------------
// Java renderings
// ----------------------------------------------------------------------------------------

/// Java's `Double.toString` (JDK 19+ shortest-decimal algorithm).
pub fn java_double_to_string(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    let sign = if v < 0.0 { "-" } else { "" };
    let (digits, exp) = shortest_digits(v.abs());
    if (-3..7).contains(&exp) {
        if exp >= 0 {
            // At most 7 integer digits here, so the casts are lossless.
            let int_len = exp as usize + 1;
            let (int_part, frac_part) = if digits.len() > int_len {
                (digits[..int_len].to_owned(), digits[int_len..].to_owned())
            } else {
                (
                    format!("{digits}{}", "0".repeat(int_len - digits.len())),
                    "0".to_owned(),
                )
            };
            format!("{sign}{int_part}.{frac_part}")
        } else {
            let zeros = "0".repeat((-exp - 1) as usize);
            format!("{sign}0.{zeros}{digits}")
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let rest = if rest.is_empty() { "0" } else { rest };
        format!("{sign}{first}.{rest}E{exp}")
    }
}

/// The shortest decimal digits `d1d2...` and exponent `e` with `a = d1.d2... × 10^e` that
/// round-trip, choosing like Java: if one digit suffices, the closest of up to two digits.
fn shortest_digits(a: f64) -> (String, i32) {
    let (digits, exp) = split_exp(&format!("{a:e}"));
    if digits.len() == 1 {
        let two = format!("{a:.1e}");
        if two.parse::<f64>() == Ok(a) {
            let (d2, e2) = split_exp(&two);
            let d2 = d2.trim_end_matches('0');
            if !d2.is_empty() {
                return (d2.to_owned(), e2);
            }
        }
    }
    (digits, exp)
}

/// Splits Rust's `{:e}` output ("1.2345e-7") into digits ("12345") and exponent (-7).
fn split_exp(s: &str) -> (String, i32) {
    let (mantissa, exp) = s.split_once('e').unwrap_or((s, "0"));
    let digits = mantissa.chars().filter(char::is_ascii_digit).collect();
    (digits, exp.parse().unwrap_or(0))
}

/// A year as `java.time` prints it: 4 digits, sign when negative, `+` above 9999.
fn java_iso_year(year: i32) -> String {
    if year > 9999 {
        format!("+{year}")
    } else if year >= 0 {
        format!("{year:04}")
    } else {
        format!("-{:04}", i64::from(year).unsigned_abs())
    }
}

fn iso_local_date(d: NaiveDate) -> String {
    format!(
        "{}-{:02}-{:02}",
        java_iso_year(d.year()),
        d.month(),
        d.day()
    )
}

/// Nanoseconds within the second (a chrono leap second is folded back into the second).
fn nanos(t: &impl Timelike) -> u32 {
    t.nanosecond() % 1_000_000_000
}

/// ISO_LOCAL_TIME with seconds always and the fraction only when non-zero, trimmed.
fn iso_time_full(t: NaiveTime) -> String {
    let mut s = format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second());
    let n = nanos(&t);
    if n != 0 {
        let frac = format!("{n:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s
}

fn iso_local_date_time(dt: NaiveDateTime) -> String {
    format!("{}T{}", iso_local_date(dt.date()), iso_time_full(dt.time()))
}

/// `LocalDateTime.toString()`: seconds left out when seconds and nanos are 0; the fraction in
/// groups of 3 digits.
fn java_local_date_time_to_string(dt: NaiveDateTime) -> String {
    let t = dt.time();
    let n = nanos(&t);
    let mut s = format!(
        "{}T{:02}:{:02}",
        iso_local_date(dt.date()),
        t.hour(),
        t.minute()
    );
    if t.second() != 0 || n != 0 {
        s.push_str(&format!(":{:02}", t.second()));
        if n != 0 {
            if n.is_multiple_of(1_000_000) {
                s.push_str(&format!(".{:03}", n / 1_000_000));
            } else if n.is_multiple_of(1000) {
                s.push_str(&format!(".{:06}", n / 1000));
            } else {
                s.push_str(&format!(".{n:09}"));
            }
        }
    }
    s
}

/// ISO_INSTANT of a `java.util.Date`: millisecond fraction only when non-zero.
fn iso_instant(d: &DateTime<Utc>) -> String {
    let millis = nanos(d) / 1_000_000;
    let mut s = format!(
        "{}T{:02}:{:02}:{:02}",
        iso_local_date(d.date_naive()),
        d.hour(),
        d.minute(),
        d.second()
    );
    if millis != 0 {
        s.push_str(&format!(".{millis:03}"));
    }
    s.push('Z');
    s
}

/// `java.util.Date.toString()` with the JVM time zone set to UTC.
fn java_date_to_string(d: &DateTime<Utc>) -> String {
    format!("{} {}", d.format("%a %b %d %H:%M:%S UTC"), d.year())
}

fn truncate_to_millis(d: DateTime<Utc>) -> DateTime<Utc> {
    let ms = nanos(&d) / 1_000_000 * 1_000_000;
    d.with_nanosecond(ms).unwrap_or(d)
}

// ----------------------------------------------------------------------------------------
// Parsing
// ----------------------------------------------------------------------------------------

/// ISO-8601 instants with an offset (`2023-10-06T20:54:07.123Z`); date-times without an offset
/// and plain dates (`yyyy-MM-dd`, `yyyy/MM/dd`) are taken as UTC. Truncated to milliseconds.
fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    let parsed = DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
        .or_else(|| {
            let naive = s.strip_suffix(['Z', 'z']).unwrap_or(s);
            parse_local_date_time(naive)
                .or_else(|| NaiveDateTime::parse_from_str(naive, "%Y-%m-%d %H:%M:%S%.f").ok())
                .map(|dt| Utc.from_utc_datetime(&dt))
        })
        .or_else(|| {
            parse_local_date(s)
                .or_else(|| NaiveDate::parse_from_str(s, "%Y/%m/%d").ok())
                .map(|d| Utc.from_utc_datetime(&d.and_time(NaiveTime::MIN)))
        })?;
    Some(truncate_to_millis(parsed))
}

fn parse_local_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

fn parse_local_date_time(s: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ldt(s: &str) -> NaiveDateTime {
        parse_local_date_time(s).expect("test date-time")
    }

    fn date(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test instant")
            .with_timezone(&Utc)
    }

    #[test]
    fn double_to_string_matches_java() {
        let cases = [
            (2.0, "2.0"),
            (1e10, "1.0E10"),
            (0.001, "0.001"),
            (1.0e-4, "1.0E-4"),
            (12345678.9, "1.23456789E7"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (1.5, "1.5"),
            (-2.5, "-2.5"),
            (100.0, "100.0"),
            (9999999.0, "9999999.0"),
            (1e7, "1.0E7"),
            (0.1, "0.1"),
            (0.1 + 0.2, "0.30000000000000004"),
            (123.456, "123.456"),
            (1.0e-3 * 1.5, "0.0015"),
            (1.0e21, "1.0E21"),
            (1.2e-10, "1.2E-10"),
            (f64::MAX, "1.7976931348623157E308"),
            (f64::MIN_POSITIVE, "2.2250738585072014E-308"),
            (5e-324, "4.9E-324"),
        ];
        for (v, expected) in cases {
            assert_eq!(java_double_to_string(v), expected, "{v:e}");
            let p = ParameterValue::Double(v);
            assert_eq!(p.to_stored_string(), expected);
            assert_eq!(p.to_key_string(), expected);
        }
    }

    #[test]
    fn local_date_time_renderings() {
        let cases = [
            (
                "2024-01-15T10:00:00",
                "2024-01-15T10:00",
                "2024-01-15T10:00:00",
            ),
            (
                "2024-01-15T10:00:05",
                "2024-01-15T10:00:05",
                "2024-01-15T10:00:05",
            ),
            (
                "2024-01-15T10:00:00.5",
                "2024-01-15T10:00:00.500",
                "2024-01-15T10:00:00.5",
            ),
            (
                "2024-01-15T10:00:00.123",
                "2024-01-15T10:00:00.123",
                "2024-01-15T10:00:00.123",
            ),
            (
                "2024-01-15T10:00:00.1234",
                "2024-01-15T10:00:00.123400",
                "2024-01-15T10:00:00.1234",
            ),
            (
                "2024-01-15T10:00:00.123456",
                "2024-01-15T10:00:00.123456",
                "2024-01-15T10:00:00.123456",
            ),
            (
                "2024-01-15T10:00:00.000000001",
                "2024-01-15T10:00:00.000000001",
                "2024-01-15T10:00:00.000000001",
            ),
            (
                "2024-01-15T23:59:59.123456789",
                "2024-01-15T23:59:59.123456789",
                "2024-01-15T23:59:59.123456789",
            ),
        ];
        for (input, key, stored) in cases {
            let v = ParameterValue::LocalDateTime(ldt(input));
            assert_eq!(v.to_key_string(), key, "{input}");
            assert_eq!(v.to_stored_string(), stored, "{input}");
            assert_eq!(v.to_string(), stored);
            assert_eq!(
                ParameterValue::parse("java.time.LocalDateTime", stored),
                Ok(v.clone())
            );
            assert_eq!(ParameterValue::parse("localdatetime", key), Ok(v));
        }
    }

    #[test]
    fn date_renderings() {
        let v = ParameterValue::Date(date("2023-10-06T20:54:07.123Z"));
        assert_eq!(v.java_type(), "java.util.Date");
        assert_eq!(v.to_stored_string(), "2023-10-06T20:54:07.123Z");
        assert_eq!(v.to_key_string(), "Fri Oct 06 20:54:07 UTC 2023");

        let v = ParameterValue::Date(date("2023-10-06T20:54:07Z"));
        assert_eq!(v.to_stored_string(), "2023-10-06T20:54:07Z");
        assert_eq!(v.to_key_string(), "Fri Oct 06 20:54:07 UTC 2023");

        let v = ParameterValue::Date(date("2024-01-05T03:04:05.050Z"));
        assert_eq!(v.to_stored_string(), "2024-01-05T03:04:05.050Z");
        assert_eq!(v.to_key_string(), "Fri Jan 05 03:04:05 UTC 2024");

        // Sub-millisecond digits are dropped, as java.util.Date cannot hold them.
        let v = ParameterValue::Date(date("2023-10-06T20:54:07.123456Z"));
        assert_eq!(v.to_stored_string(), "2023-10-06T20:54:07.123Z");
        assert_eq!(
            JobParameter::date(date("2023-10-06T20:54:07.123456Z")).value,
            ParameterValue::Date(date("2023-10-06T20:54:07.123Z"))
        );
    }

    #[test]
    fn simple_renderings() {
        let d = NaiveDate::from_ymd_opt(2024, 1, 15).expect("date");
        let v = ParameterValue::LocalDate(d);
        assert_eq!(v.to_stored_string(), "2024-01-15");
        assert_eq!(v.to_key_string(), "2024-01-15");
        assert_eq!(v.java_type(), "java.time.LocalDate");
        let far = NaiveDate::from_ymd_opt(12345, 1, 2).expect("date");
        assert_eq!(
            ParameterValue::LocalDate(far).to_key_string(),
            "+12345-01-02"
        );
        let early = NaiveDate::from_ymd_opt(5, 1, 2).expect("date");
        assert_eq!(
            ParameterValue::LocalDate(early).to_key_string(),
            "0005-01-02"
        );

        assert_eq!(ParameterValue::Long(2).to_stored_string(), "2");
        assert_eq!(ParameterValue::Long(-7).to_key_string(), "-7");
        assert_eq!(ParameterValue::Long(2).java_type(), "java.lang.Long");
        assert_eq!(ParameterValue::Double(2.0).java_type(), "java.lang.Double");
        let s = ParameterValue::String("a b".into());
        assert_eq!(s.java_type(), "java.lang.String");
        assert_eq!(s.to_stored_string(), "a b");
        assert_eq!(s.to_key_string(), "a b");
    }

    #[test]
    fn parse_stored_values() {
        assert_eq!(
            ParameterValue::parse("java.lang.Long", "2"),
            Ok(ParameterValue::Long(2))
        );
        assert_eq!(
            ParameterValue::parse("LONG", "-5"),
            Ok(ParameterValue::Long(-5))
        );
        assert_eq!(
            ParameterValue::parse("Double", "1.0E10"),
            Ok(ParameterValue::Double(1e10))
        );
        assert_eq!(
            ParameterValue::parse("DOUBLE", "NaN").map(|v| v.to_stored_string()),
            Ok("NaN".to_owned())
        );
        assert_eq!(
            ParameterValue::parse("double", "-Infinity"),
            Ok(ParameterValue::Double(f64::NEG_INFINITY))
        );
        assert_eq!(
            ParameterValue::parse("STRING", " x,y "),
            Ok(ParameterValue::String(" x,y ".into()))
        );
        assert_eq!(
            ParameterValue::parse("java.util.Date", "2023-10-06T20:54:07Z"),
            Ok(ParameterValue::Date(date("2023-10-06T20:54:07Z")))
        );
        assert_eq!(
            ParameterValue::parse("DATE", "2023-10-06T20:54:07.123Z"),
            Ok(ParameterValue::Date(date("2023-10-06T20:54:07.123Z")))
        );
        assert_eq!(
            ParameterValue::parse("date", "2007/12/11"),
            Ok(ParameterValue::Date(date("2007-12-11T00:00:00Z")))
        );
        assert_eq!(
            ParameterValue::parse("java.time.LocalDate", "2024-01-15"),
            Ok(ParameterValue::LocalDate(
                NaiveDate::from_ymd_opt(2024, 1, 15).expect("date")
            ))
        );
        // Round trips of every stored form.
        for v in [
            ParameterValue::String("s".into()),
            ParameterValue::Long(i64::MIN),
            ParameterValue::Double(12345678.9),
            ParameterValue::Double(5e-324),
            ParameterValue::Date(date("1999-12-31T23:59:59.999Z")),
            ParameterValue::LocalDate(NaiveDate::from_ymd_opt(2024, 2, 29).expect("date")),
            ParameterValue::LocalDateTime(ldt("2024-01-15T10:00:00.000123")),
        ] {
            assert_eq!(
                ParameterValue::parse(v.java_type(), &v.to_stored_string()),
                Ok(v.clone())
            );
        }
    }

    #[test]
    fn parse_stored_errors() {
        assert_eq!(
            ParameterValue::parse("java.lang.Integer", "1")
                .unwrap_err()
                .to_string(),
            "unknown job parameter type \"java.lang.Integer\" (expected one of java.lang.String, \
             java.lang.Long, java.lang.Double, java.util.Date, java.time.LocalDate, \
             java.time.LocalDateTime)"
        );
        assert_eq!(
            ParameterValue::parse("long", "1.5")
                .unwrap_err()
                .to_string(),
            "\"1.5\" is not a valid java.lang.Long"
        );
        assert_eq!(
            ParameterValue::parse("localdate", "2024-13-01")
                .unwrap_err()
                .to_string(),
            "\"2024-13-01\" is not a valid java.time.LocalDate (expected yyyy-MM-dd)"
        );
        assert!(ParameterValue::parse("long", "99999999999999999999").is_err());
        assert!(ParameterValue::parse("date", "yesterday").is_err());
        assert!(ParameterValue::parse("localdatetime", "2024-01-15").is_err());
    }

    #[test]
    fn parameters_collection() {
        let p = JobParameters::new()
            .with("b", JobParameter::long(2))
            .with("a", JobParameter::string("x"))
            .with("c", JobParameter::double(1.5).non_identifying());
        assert_eq!(p.len(), 3);
        assert!(!p.is_empty());
        assert!(JobParameters::new().is_empty());
        assert_eq!(p.get_string("a"), Some("x"));
        assert_eq!(p.get_string("b"), None);
        assert_eq!(p.get_long("b"), Some(2));
        assert_eq!(p.get_long("a"), None);
        assert_eq!(p.get_long("zz"), None);
        assert!(p.contains("c"));
        assert!(!p.contains("d"));
        assert_eq!(
            p.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            vec!["a", "b", "c"]
        );
        let ids = p.identifying();
        assert_eq!(ids.len(), 2);
        assert!(!ids.contains("c"));

        let overrides = JobParameters::new()
            .with("b", JobParameter::long(3).non_identifying())
            .with("d", JobParameter::string("new"));
        let merged = p.merge(&overrides);
        assert_eq!(merged.len(), 4);
        assert_eq!(
            merged.get("b"),
            Some(&JobParameter::long(3).non_identifying())
        );
        assert_eq!(merged.get_string("a"), Some("x"));
        assert_eq!(p.get_long("b"), Some(2));

        let mut m = JobParameters::new();
        assert_eq!(m.insert("a", JobParameter::long(1)), None);
        assert_eq!(
            m.insert("a", JobParameter::long(2)),
            Some(JobParameter::long(1))
        );
        let collected: JobParameters = vec![("a".to_owned(), JobParameter::long(2))]
            .into_iter()
            .collect();
        assert_eq!(collected, m);
    }

    #[test]
    fn parse_plain_and_typed_arguments() {
        assert_eq!(
            parse_argument("name=value"),
            Ok(("name".into(), JobParameter::string("value")))
        );
        assert_eq!(
            parse_argument("expr=a=b"),
            Ok(("expr".into(), JobParameter::string("a=b")))
        );
        assert_eq!(
            parse_argument("empty="),
            Ok(("empty".into(), JobParameter::string("")))
        );
        assert_eq!(
            parse_argument("vendor.id=3902483920,java.lang.Long,false"),
            Ok((
                "vendor.id".into(),
                JobParameter::long(3902483920).non_identifying()
            ))
        );
        assert_eq!(
            parse_argument("schedule.date=2008-01-24,java.time.LocalDate,true"),
            Ok((
                "schedule.date".into(),
                JobParameter::local_date(NaiveDate::from_ymd_opt(2008, 1, 24).expect("date"))
            ))
        );
        assert_eq!(
            parse_argument("n=5,long"),
            Ok(("n".into(), JobParameter::long(5)))
        );
        assert_eq!(
            parse_argument("n=5,LONG,TRUE"),
            Ok(("n".into(), JobParameter::long(5)))
        );
        assert_eq!(
            parse_argument("r=2.5,java.lang.Double,False"),
            Ok(("r".into(), JobParameter::double(2.5).non_identifying()))
        );
        assert_eq!(
            parse_argument("at=2023-10-06T20:54:07.123Z,java.util.Date"),
            Ok((
                "at".into(),
                JobParameter::date(date("2023-10-06T20:54:07.123Z"))
            ))
        );
        assert_eq!(
            parse_argument("t=2024-01-15T10:00,localdatetime"),
            Ok((
                "t".into(),
                JobParameter::local_date_time(ldt("2024-01-15T10:00:00"))
            ))
        );
        assert_eq!(
            parse_argument("s=x,java.lang.String,false"),
            Ok(("s".into(), JobParameter::string("x").non_identifying()))
        );
    }

    #[test]
    fn commas_in_plain_values() {
        assert_eq!(
            parse_argument("file=a,b.csv"),
            Ok(("file".into(), JobParameter::string("a,b.csv")))
        );
        assert_eq!(
            parse_argument("file=/in/a,b,c.csv"),
            Ok(("file".into(), JobParameter::string("/in/a,b,c.csv")))
        );
        assert_eq!(
            parse_argument("file=a,b.csv,java.lang.String"),
            Ok(("file".into(), JobParameter::string("a,b.csv")))
        );
        assert_eq!(
            parse_argument("file=a,b.csv,string,false"),
            Ok((
                "file".into(),
                JobParameter::string("a,b.csv").non_identifying()
            ))
        );
        // A flag without a known type is part of the value.
        assert_eq!(
            parse_argument("x=a,true"),
            Ok(("x".into(), JobParameter::string("a,true")))
        );
        // A type followed by something other than true/false is not a type suffix.
        assert_eq!(
            parse_argument("x=1,long,yes"),
            Ok(("x".into(), JobParameter::string("1,long,yes")))
        );
        // A trailing comma keeps everything.
        assert_eq!(
            parse_argument("x=a,"),
            Ok(("x".into(), JobParameter::string("a,")))
        );
    }

    #[test]
    fn spring_batch_4_markers() {
        assert_eq!(
            parse_argument("-run.date(date)=2007/12/11"),
            Ok((
                "run.date".into(),
                JobParameter::date(date("2007-12-11T00:00:00Z")).non_identifying()
            ))
        );
        assert_eq!(
            parse_argument("department.id(long)=2345"),
            Ok(("department.id".into(), JobParameter::long(2345)))
        );
        assert_eq!(
            parse_argument("+department.id(long)=2345"),
            Ok(("department.id".into(), JobParameter::long(2345)))
        );
        assert_eq!(
            parse_argument("rate(double)=0.5"),
            Ok(("rate".into(), JobParameter::double(0.5)))
        );
        // A (string) suffix takes the value literally, commas and all.
        assert_eq!(
            parse_argument("s(string)=1,long"),
            Ok(("s".into(), JobParameter::string("1,long")))
        );
        assert_eq!(
            parse_argument("-name=v"),
            Ok(("name".into(), JobParameter::string("v").non_identifying()))
        );
        assert_eq!(
            parse_argument("-n=5,long"),
            Ok(("n".into(), JobParameter::long(5).non_identifying()))
        );
        assert_eq!(
            parse_argument("-n=5,long,false"),
            Ok(("n".into(), JobParameter::long(5).non_identifying()))
        );
        assert_eq!(
            parse_argument("+n=5"),
            Ok(("n".into(), JobParameter::string("5")))
        );
    }

    #[test]
    fn argument_errors() {
        let msg = |arg: &str| parse_argument(arg).unwrap_err().to_string();
        assert_eq!(
            msg("count=abc,java.lang.Long"),
            "parameter 'count': \"abc\" is not a valid java.lang.Long"
        );
        assert_eq!(
            msg("count(long)=abc"),
            "parameter 'count': \"abc\" is not a valid java.lang.Long"
        );
        assert_eq!(
            msg("r=x,double,true"),
            "parameter 'r': \"x\" is not a valid java.lang.Double"
        );
        assert_eq!(
            msg("d=2024-1-x,java.time.LocalDate"),
            "parameter 'd': \"2024-1-x\" is not a valid java.time.LocalDate (expected yyyy-MM-dd)"
        );
        assert_eq!(
            msg("d(date)=12.11.2007"),
            "parameter 'd': \"12.11.2007\" is not a valid java.util.Date (expected yyyy/MM/dd)"
        );
        assert_eq!(
            msg("novalue"),
            "invalid job parameter \"novalue\": expected name=value"
        );
        assert_eq!(
            msg("=x"),
            "invalid job parameter \"=x\": the parameter name is empty"
        );
        assert_eq!(
            msg("-=x"),
            "invalid job parameter \"-=x\": the parameter name is empty"
        );
        assert_eq!(
            msg("(long)=1"),
            "invalid job parameter \"(long)=1\": the parameter name is empty"
        );
        assert_eq!(
            msg("-n=5,long,true"),
            "parameter 'n': the leading '-' marks it non-identifying, but its value says \
             identifying=true"
        );
        assert_eq!(
            JobParameters::parse_args(["a=1", "-a=2"])
                .unwrap_err()
                .to_string(),
            "parameter 'a' is given more than once"
        );
        // Multi-byte names do not trip the suffix check.
        assert_eq!(
            parse_argument("日本語=x"),
            Ok(("日本語".into(), JobParameter::string("x")))
        );
    }

    #[test]
    fn parse_args_and_encode() {
        let p = JobParameters::parse_args([
            "jobFileLocation=/test/myfile2.csv",
            "batchRun=2",
            "run.id=7,java.lang.Long,false",
        ])
        .expect("valid arguments");
        assert_eq!(p.get_string("jobFileLocation"), Some("/test/myfile2.csv"));
        assert_eq!(p.get_string("batchRun"), Some("2"));
        assert_eq!(
            p.get("run.id"),
            Some(&JobParameter::long(7).non_identifying())
        );
        assert_eq!(
            JobParameters::parse_args(Vec::<String>::new()),
            Ok(JobParameters::new())
        );

        for parameter in [
            JobParameter::string("a,java.lang.Long,true"),
            JobParameter::long(-3).non_identifying(),
            JobParameter::double(1e10),
            JobParameter::date(date("2023-10-06T20:54:07.123Z")),
            JobParameter::local_date_time(ldt("2024-01-15T10:00:00")),
        ] {
            let arg = format!("x={}", parameter.encode());
            assert_eq!(parse_argument(&arg), Ok(("x".into(), parameter)), "{arg}");
        }
        assert_eq!(JobParameter::long(2).encode(), "2,java.lang.Long,true");
    }
}
