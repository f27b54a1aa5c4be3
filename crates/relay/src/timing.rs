//! What a request's own times mean for the edge (TS-0004 §7.3.2.6; `ONEM2M.md` §7), as a transit
//! between the device and the CSE:
//! - `rqet` (request expiration) or `rset` (result expiration) already past: answered 4008 at once,
//!   never forwarded.
//! - While it waits in the edge's queue, a request expires at the earliest of its `rqet`, its
//!   `rset` and the edge's `--request-timeout` (answered 4008 by the queue's timer).
//! - Once forwarded, the edge waits for the CSE's answer until `rset` if given (the result is
//!   worthless after it), else `--request-timeout` from `oet` when that is later than now (the CSE
//!   executes it then), else `--request-timeout` from now.
//! - `oet` (operation execution time) itself is the hosting CSE's business: the edge forwards at once.
//! - `rt.rtv` 5 (no response): nothing is kept for the answer and nothing is answered by the edge.

use std::time::{Duration, Instant};

use m2m_primitive::RoutingView;
use m2m_primitive::time::AbsRelTime;

/// The edge's deadlines for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestTimes {
    /// Answer 4008 if still queued then.
    pub queued_until: Instant,
    /// Answer 4008 if the CSE has not answered by then.
    pub answer_by: Instant,
    /// `rt.rtv` = 5: the originator expects no response.
    pub no_response: bool,
}

/// The deadlines of a request in `view` received at `now`; the error names the time that has
/// already passed.
pub(crate) fn request_times(
    view: &RoutingView<'_>,
    now: Instant,
    timeout: Duration,
) -> Result<RequestTimes, &'static str> {
    let any = view.rqet.or(view.rset).or(view.oet).is_some();
    // The wall clock only for requests that carry a time.
    let wall = if any {
        m2m_primitive::time::now_millis()
    } else {
        0
    };
    let left = |t: Option<AbsRelTime>| t.map(|t| t.resolve(wall).saturating_sub(wall));
    let (rqet, rset, oet) = (left(view.rqet), left(view.rset), left(view.oet));
    if rqet.is_some_and(|ms| ms < 0) {
        return Err("request expired (rqet in the past)");
    }
    if rset.is_some_and(|ms| ms < 0) {
        return Err("result expiration (rset) in the past");
    }
    let at = |ms: i64| now + Duration::from_millis(ms.max(0) as u64);
    let mut queued_until = now + timeout;
    for t in [rqet, rset].into_iter().flatten() {
        queued_until = queued_until.min(at(t));
    }
    let answer_by = match (rset, oet) {
        (Some(ms), _) => at(ms),
        (None, Some(ms)) if ms > 0 => at(ms) + timeout,
        _ => now + timeout,
    };
    Ok(RequestTimes {
        queued_until,
        answer_by,
        no_response: view.rtv == Some(5),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use m2m_primitive::Format;

    fn times(members: &str) -> Result<RequestTimes, &'static str> {
        let text = format!(r#"{{"op":2,"to":"cse-in","fr":"Ca","rqi":"1","rvi":"3"{members}}}"#);
        let view = RoutingView::parse(Format::Json, text.as_bytes()).unwrap();
        request_times(&view, NOW.with(|n| *n), Duration::from_secs(10))
    }

    thread_local!(static NOW: Instant = Instant::now());

    fn secs(s: u64) -> Instant {
        NOW.with(|n| *n) + Duration::from_secs(s)
    }

    #[test]
    fn without_times_the_edges_timeout_rules() {
        let t = times("").unwrap();
        assert_eq!(
            (t.queued_until, t.answer_by, t.no_response),
            (secs(10), secs(10), false)
        );
    }

    #[test]
    fn rqet_bounds_the_queue_and_rset_the_wait_for_the_answer() {
        let t = times(r#","rqet":2000"#).unwrap();
        assert_eq!((t.queued_until, t.answer_by), (secs(2), secs(10)));
        let t = times(r#","rqet":"PT2S","rset":"PT30S""#).unwrap();
        assert_eq!((t.queued_until, t.answer_by), (secs(2), secs(30)));
        let t = times(r#","rset":3000"#).unwrap();
        assert_eq!((t.queued_until, t.answer_by), (secs(3), secs(3)));
    }

    #[test]
    fn a_later_oet_moves_the_wait_and_a_past_rqet_or_rset_is_refused() {
        let t = times(r#","oet":"PT20S""#).unwrap();
        assert_eq!((t.queued_until, t.answer_by), (secs(10), secs(30)));
        assert_eq!(times(r#","oet":-5000"#).unwrap().answer_by, secs(10));
        assert!(
            times(r#","rqet":"20000101T000000""#)
                .unwrap_err()
                .contains("rqet")
        );
        assert!(times(r#","rset":-1"#).unwrap_err().contains("rset"));
    }

    #[test]
    fn rtv_5_expects_no_response() {
        assert!(times(r#","rt":{"rtv":5}"#).unwrap().no_response);
        assert!(!times(r#","rt":{"rtv":1}"#).unwrap().no_response);
    }
}
