//! The one integration-test crate: every test starts the real server (in process on port 0, or the
//! real binary) and talks to it over real TLS against a real redb file in a temp dir.

// Tests may unwrap: a panic is a test failure with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chat_support;
mod lazyfs;
mod netns;
mod process;
mod support;

mod accounts;
mod admin_api;
mod admin_cli;
mod alarm_history;
mod alarms;
mod alarms_escalation;
mod alarms_ntfy;
mod alarms_system;
mod artifacts;
mod attachment_retention;
mod audit_export;
mod auth;
mod backup;
mod bench_drivers;
mod bench_replication;
mod binary;
mod chat;
mod chat_live;
mod clock;
mod device_certs;
mod devices_ui;
mod discovery;
mod early_answers;
mod errors;
mod event_query;
mod events;
mod foundations;
mod history_policy;
mod hq_retention;
mod incidents;
mod ingest;
mod input_hardening;
mod listener;
mod log;
mod metrics;
mod migration;
mod nats_forward;
mod notify;
mod openapi;
mod ops;
mod powercut;
mod replication;
mod replication_chaos;
mod retention;
mod search;
mod storage;
mod tls;
mod ui;
mod ui_alarm_notify;
mod ui_alarms;
mod ui_assets;
mod ui_chat_product;
mod ui_events;
mod ui_incidents;
mod ui_search;
mod webdriver;
