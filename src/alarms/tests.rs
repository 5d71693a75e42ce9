//! Tests of the alarm domain (filled below).
