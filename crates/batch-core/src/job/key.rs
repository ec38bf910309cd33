//! `BATCH_JOB_INSTANCE.JOB_KEY`: Spring Batch's `DefaultJobKeyGenerator` for releases 5 and 6.

use std::fmt;
use std::str::FromStr;

use md5::{Digest, Md5};

use super::parameters::JobParameters;

/// Which Spring Batch release's DefaultJobKeyGenerator format to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JobKeyFormat {
    /// Spring Batch 5.0–5.2: `name={value=V, type=T, identifying=true};` per parameter.
    V5,
    /// Spring Batch 6.0: `JobParameter{name='N', value=V, type=T, identifying=true}` per
    /// parameter, without separator.
    #[default]
    V6,
}

/// An unrecognised job key format name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job key format {0:?} (expected v5 or v6)")]
pub struct UnknownJobKeyFormat(pub String);

impl FromStr for JobKeyFormat {
    type Err = UnknownJobKeyFormat;

    /// Accepts `v5`, `5`, `v6` and `6`, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "v5" | "5" => Ok(JobKeyFormat::V5),
            "v6" | "6" => Ok(JobKeyFormat::V6),
            _ => Err(UnknownJobKeyFormat(s.to_owned())),
        }
    }
}

impl fmt::Display for JobKeyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobKeyFormat::V5 => "v5",
            JobKeyFormat::V6 => "v6",
        })
    }
}

/// The exact string that [`job_key`] hashes: the identifying parameters, sorted by Java
/// `String` order (UTF-16 code units), in the chosen release's format.
pub fn job_key_input(parameters: &JobParameters, format: JobKeyFormat) -> String {
    let mut identifying: Vec<_> = parameters.iter().filter(|(_, p)| p.identifying).collect();
    identifying.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));

    let mut out = String::new();
    for (name, parameter) in identifying {
        let value = parameter.value.to_key_string();
        let java_type = parameter.value.java_type();
        match format {
            JobKeyFormat::V5 => {
                out.push_str(&format!(
                    "{name}={{value={value}, type=class {java_type}, identifying=true}};"
                ));
            }
            JobKeyFormat::V6 => {
                out.push_str(&format!(
                    "JobParameter{{name='{name}', value={value}, type=class {java_type}, \
                     identifying=true}}"
                ));
            }
        }
    }
    out
}

/// JOB_KEY: 32 lowercase hex digits of MD5 over the identifying parameters, as that Spring
/// Batch version's DefaultJobKeyGenerator computes it.
pub fn job_key(parameters: &JobParameters, format: JobKeyFormat) -> String {
    let digest = Md5::digest(job_key_input(parameters, format).as_bytes());
    format!("{digest:x}")
}

#[cfg(test)]
mod tests {
    use super::super::parameters::{JobParameter, ParameterValue};
    use super::*;
    use chrono::{NaiveDate, TimeZone, Utc};

    fn assert_key(p: &JobParameters, format: JobKeyFormat, input: &str, md5: &str) {
        assert_eq!(job_key_input(p, format), input);
        assert_eq!(job_key(p, format), md5);
    }

    fn worked_example() -> JobParameters {
        JobParameters::new()
            .with("jobFileLocation", JobParameter::string("/test/myfile2.csv"))
            .with("batchRun", JobParameter::string("2"))
    }

    #[test]
    fn reference_example() {
        let p = worked_example();
        assert_key(
            &p,
            JobKeyFormat::V6,
            "JobParameter{name='batchRun', value=2, type=class java.lang.String, \
             identifying=true}JobParameter{name='jobFileLocation', value=/test/myfile2.csv, \
             type=class java.lang.String, identifying=true}",
            "6403516befe52ba404e72c2afb9145f8",
        );
        assert_key(
            &p,
            JobKeyFormat::V5,
            "batchRun={value=2, type=class java.lang.String, identifying=true};\
             jobFileLocation={value=/test/myfile2.csv, type=class java.lang.String, \
             identifying=true};",
            "722ee0deaad528e656158d90f4134b1f",
        );
        assert_eq!(JobKeyFormat::default(), JobKeyFormat::V6);
    }

    #[test]
    fn non_identifying_parameters_do_not_change_the_key() {
        let base = worked_example();
        let extra = base
            .clone()
            .with("run.ts", JobParameter::long(99).non_identifying())
            .with("a", JobParameter::double(1.0).non_identifying());
        for format in [JobKeyFormat::V5, JobKeyFormat::V6] {
            assert_eq!(job_key(&extra, format), job_key(&base, format));
        }
    }

    #[test]
    fn empty_or_only_non_identifying() {
        let none = JobParameters::new();
        let non_id = JobParameters::new().with("x", JobParameter::long(1).non_identifying());
        for format in [JobKeyFormat::V5, JobKeyFormat::V6] {
            assert_key(&none, format, "", "d41d8cd98f00b204e9800998ecf8427e");
            assert_key(&non_id, format, "", "d41d8cd98f00b204e9800998ecf8427e");
        }
    }

    /// Long, Double, LocalDate and a non-identifying String.
    fn typed_set() -> JobParameters {
        JobParameters::new()
            .with("run.id", JobParameter::long(1))
            .with("rate", JobParameter::double(2.0))
            .with(
                "schedule.date",
                JobParameter::local_date(NaiveDate::from_ymd_opt(2024, 1, 15).expect("date")),
            )
            .with("comment", JobParameter::string("ignored").non_identifying())
    }

    // Expected digests computed with `printf '%s' '<input>' | md5sum`.
    #[test]
    fn typed_set_v6() {
        assert_key(
            &typed_set(),
            JobKeyFormat::V6,
            "JobParameter{name='rate', value=2.0, type=class java.lang.Double, identifying=true}\
             JobParameter{name='run.id', value=1, type=class java.lang.Long, identifying=true}\
             JobParameter{name='schedule.date', value=2024-01-15, type=class java.time.LocalDate, \
             identifying=true}",
            "eaac76c716903cfa3de66d673c8b90be",
        );
    }

    #[test]
    fn typed_set_v5() {
        assert_key(
            &typed_set(),
            JobKeyFormat::V5,
            "rate={value=2.0, type=class java.lang.Double, identifying=true};\
             run.id={value=1, type=class java.lang.Long, identifying=true};\
             schedule.date={value=2024-01-15, type=class java.time.LocalDate, identifying=true};",
            "8d961f09e2845b2aff1f1692954127dd",
        );
    }

    /// Date, LocalDateTime, a String `2` vs a Long, and Java ordering (uppercase first).
    fn temporal_set() -> JobParameters {
        JobParameters::new()
            .with(
                "at",
                JobParameter::date(
                    Utc.with_ymd_and_hms(2023, 10, 6, 20, 54, 7)
                        .single()
                        .expect("instant"),
                ),
            )
            .with(
                "Start",
                JobParameter::new(
                    ParameterValue::LocalDateTime(
                        NaiveDate::from_ymd_opt(2024, 1, 15)
                            .and_then(|d| d.and_hms_opt(10, 0, 0))
                            .expect("date-time"),
                    ),
                    true,
                ),
            )
            .with("count", JobParameter::long(2))
            .with("ratio", JobParameter::double(1e10))
    }

    #[test]
    fn temporal_set_v6() {
        assert_key(
            &temporal_set(),
            JobKeyFormat::V6,
            "JobParameter{name='Start', value=2024-01-15T10:00, type=class \
             java.time.LocalDateTime, identifying=true}\
             JobParameter{name='at', value=Fri Oct 06 20:54:07 UTC 2023, type=class \
             java.util.Date, identifying=true}\
             JobParameter{name='count', value=2, type=class java.lang.Long, identifying=true}\
             JobParameter{name='ratio', value=1.0E10, type=class java.lang.Double, \
             identifying=true}",
            "dc60c77199ea912aae551494302f2c8a",
        );
    }

    #[test]
    fn temporal_set_v5() {
        assert_key(
            &temporal_set(),
            JobKeyFormat::V5,
            "Start={value=2024-01-15T10:00, type=class java.time.LocalDateTime, identifying=true};\
             at={value=Fri Oct 06 20:54:07 UTC 2023, type=class java.util.Date, identifying=true};\
             count={value=2, type=class java.lang.Long, identifying=true};\
             ratio={value=1.0E10, type=class java.lang.Double, identifying=true};",
            "38ea185c069788d2a6c2d6e51ca7c6a5",
        );
    }

    #[test]
    fn long_and_string_give_different_keys() {
        let s = JobParameters::new().with("x", JobParameter::string("2"));
        let l = JobParameters::new().with("x", JobParameter::long(2));
        for format in [JobKeyFormat::V5, JobKeyFormat::V6] {
            assert_ne!(job_key(&s, format), job_key(&l, format));
        }
    }

    #[test]
    fn names_sort_in_utf16_order() {
        // U+1F600 is the surrogate pair D83D DE00 in UTF-16, which sorts before U+FF21, so
        // Java puts the emoji first; Rust's `str` order (code points) puts U+FF21 first.
        let p = JobParameters::new()
            .with("\u{FF21}", JobParameter::string("a"))
            .with("\u{1F600}", JobParameter::string("b"));
        assert_eq!(
            job_key_input(&p, JobKeyFormat::V5),
            "\u{1F600}={value=b, type=class java.lang.String, identifying=true};\
             \u{FF21}={value=a, type=class java.lang.String, identifying=true};"
        );
    }

    #[test]
    fn format_names() {
        assert_eq!("v5".parse(), Ok(JobKeyFormat::V5));
        assert_eq!("V6".parse(), Ok(JobKeyFormat::V6));
        assert_eq!("6".parse(), Ok(JobKeyFormat::V6));
        assert_eq!(
            "v4".parse::<JobKeyFormat>().unwrap_err().to_string(),
            "unknown job key format \"v4\" (expected v5 or v6)"
        );
        assert_eq!(JobKeyFormat::V5.to_string(), "v5");
    }
}
