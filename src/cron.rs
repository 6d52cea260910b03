//! CronJob schedules, read as the CronJob controller reads them (the standard five fields of
//! `github.com/robfig/cron`): `minute hour day-of-month month day-of-week`, with `*`, `?`, lists, ranges, steps, the
//! names `jan`–`dec` and `sun`–`sat`, and the `@hourly`…`@yearly` descriptors. As in cron, when both day fields are
//! restricted a day matching either one fires. Only what kubechat needs: when the schedule comes due.

use jiff::civil::{Date, DateTime, Time};

/// A parsed schedule; each field is the bit set of the values it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// A day field written `*` or `?`: the day then matches on the other field alone.
    any_day: bool,
    any_weekday: bool,
}

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Schedule {
    /// Parses a schedule, or says which field is wrong. `@every` is refused: kubechat has no need of it.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let text = text.trim();
        let expanded = match text {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => return Err(format!("unsupported descriptor {other}")),
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(format!("expected 5 fields, found {}", fields.len()));
        };
        let star = |f: &str| f.starts_with('*') || f.starts_with('?');
        Ok(Schedule {
            minutes: field(minute, 0, 59, &[])?,
            hours: field(hour, 0, 23, &[])? as u32,
            days: field(day, 1, 31, &[])? as u32,
            months: field(month, 1, 12, &MONTHS)? as u16,
            // Sunday may be written 7 too.
            weekdays: {
                let bits = field(weekday, 0, 7, &WEEKDAYS)?;
                ((bits | (bits >> 7)) & 0x7f) as u8
            },
            any_day: star(day),
            any_weekday: star(weekday),
        })
    }

    fn day_matches(&self, date: Date) -> bool {
        let day = self.days & (1 << date.day()) != 0;
        let weekday = self.weekdays & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        if self.any_day || self.any_weekday { day && weekday } else { day || weekday }
    }

    /// The first time after `after` (to the minute) the schedule comes due, within five years.
    pub fn next_after(&self, after: DateTime) -> Option<DateTime> {
        let minute = after.with().second(0).subsec_nanosecond(0).build().ok()?;
        let mut t = minute.checked_add(jiff::Span::new().minutes(1)).ok()?;
        let limit = after.checked_add(jiff::Span::new().years(5)).ok()?;
        while t <= limit {
            if self.months & (1 << t.month()) == 0 {
                let first = t.date().first_of_month().checked_add(jiff::Span::new().months(1)).ok()?;
                t = first.to_datetime(Time::midnight());
            } else if !self.day_matches(t.date()) {
                t = t.date().tomorrow().ok()?.to_datetime(Time::midnight());
            } else if self.hours & (1 << t.hour()) == 0 {
                t = t.with().minute(0).build().ok()?.checked_add(jiff::Span::new().hours(1)).ok()?;
            } else if self.minutes & (1 << t.minute()) == 0 {
                t = t.checked_add(jiff::Span::new().minutes(1)).ok()?;
            } else {
                return Some(t);
            }
        }
        None
    }

    /// How many times the schedule came due after `after` and up to `until`, counting at most `max`.
    pub fn due_between(&self, after: DateTime, until: DateTime, max: usize) -> usize {
        let mut count = 0;
        let mut t = after;
        while count < max {
            match self.next_after(t) {
                Some(next) if next <= until => {
                    count += 1;
                    t = next;
                }
                _ => break,
            }
        }
        count
    }
}

/// One field as a bit set over `min..=max`: `*`, `?`, `N`, `A-B`, `*/S`, `A-B/S`, `A/S`, names, comma lists.
fn field(text: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let value = |v: &str| -> Result<u32, String> {
        let lower = v.to_ascii_lowercase();
        // Names count from the field's first value: `jan` is 1, `sun` is 0.
        let named = names.iter().position(|n| *n == lower).map(|i| i as u32 + min);
        let n = named.map_or_else(|| v.parse::<u32>().map_err(|_| format!("{v:?} is not a value of {text:?}")), Ok)?;
        if n < min || n > max {
            return Err(format!("{n} is out of range {min}-{max} in {text:?}"));
        }
        Ok(n)
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step.parse().map_err(|_| format!("{step:?} is not a step in {text:?}"))?;
                if step == 0 {
                    return Err(format!("a step of 0 in {text:?}"));
                }
                (range, step)
            }
            None => (part, 1),
        };
        let (from, to) = match range {
            "*" | "?" => (min, max),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                // `A/S` runs from A to the end.
                None if step > 1 => (value(r)?, max),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        if from > to {
            return Err(format!("{from}-{to} runs backwards in {text:?}"));
        }
        for v in (from..=to).step_by(step as usize) {
            bits |= 1 << v;
        }
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime {
        s.parse().unwrap()
    }

    fn next(schedule: &str, after: &str) -> String {
        Schedule::parse(schedule).unwrap().next_after(at(after)).unwrap().to_string()
    }

    #[test]
    fn schedules_come_due_as_cron_says() {
        assert_eq!(next("*/15 * * * *", "2026-11-20T10:07:30"), "2026-11-20T10:15:00");
        assert_eq!(next("0 3 * * *", "2026-11-20T03:00:00"), "2026-11-21T03:00:00");
        assert_eq!(next("@hourly", "2026-11-20T10:59:00"), "2026-11-20T11:00:00");
        assert_eq!(next("30 2 * * mon-fri", "2026-11-20T03:00:00"), "2026-11-23T02:30:00"); // Friday to Monday
        assert_eq!(next("0 0 1 jan,jul *", "2026-11-20T00:00:00"), "2027-01-01T00:00:00");
        assert_eq!(next("0 0 * * 7", "2026-11-20T00:00:00"), "2026-11-22T00:00:00"); // 7 is Sunday
        // Both day fields restricted: either one.
        assert_eq!(next("0 0 13 * 5", "2026-11-01T00:00:00"), "2026-11-06T00:00:00");
        assert_eq!(next("5/20 * * * *", "2026-11-20T10:26:00"), "2026-11-20T10:45:00");
        assert_eq!(Schedule::parse("0 0 30 2 *").unwrap().next_after(at("2026-01-01T00:00:00")), None);
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        assert_eq!(Schedule::parse("* * *").unwrap_err(), "expected 5 fields, found 3");
        assert!(Schedule::parse("61 * * * *").unwrap_err().contains("out of range 0-59"));
        assert!(Schedule::parse("@every 5m").unwrap_err().contains("unsupported"));
        assert!(Schedule::parse("*/0 * * * *").unwrap_err().contains("step of 0"));
    }

    #[test]
    fn due_times_are_counted_up_to_a_bound() {
        let hourly = Schedule::parse("0 * * * *").unwrap();
        assert_eq!(hourly.due_between(at("2026-11-20T10:30:00"), at("2026-11-20T13:10:00"), 10), 3);
        assert_eq!(hourly.due_between(at("2026-11-20T10:30:00"), at("2026-11-23T13:10:00"), 5), 5);
    }
}
