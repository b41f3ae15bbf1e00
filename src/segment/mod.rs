//! Segments: a marketer's rule over people (`rule`), compiled to one SQL query (`compile`), and
//! the membership it yields kept in `segment_member` (`store`). Audiences are built from
//! segments; every sync refreshes its segment first.

pub mod compile;
pub mod rule;
pub mod store;

pub use rule::Rule;
pub use store::{NewSegment, Preview, Refreshed, Segment, SegmentPatch};
