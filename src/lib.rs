//! plantwire: secure messaging and an append-only, hash-chained event log for plant networks.
//! The library holds everything; the binary only installs hooks, parses the command line and calls `cli::run`.

pub mod admin;
pub mod alarms;
pub mod audience;
pub mod audit;
pub mod auth;
pub mod bench;
pub mod bootstrap;
pub mod chat;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod device_certs;
pub mod device_files;
pub mod devices;
pub mod discovery;
pub mod error;
pub mod events;
pub mod http;
pub mod incidents;
pub mod ingest;
pub mod log;
pub mod maintenance;
pub mod metrics;
pub mod replication;
pub mod retention;
pub mod search;
pub mod secret;
pub mod server;
pub mod service;
pub mod site_files;
pub mod state;
pub mod store;
pub mod supervisor;
pub mod telemetry;
pub mod text;
pub mod tls;
pub mod users;

pub use config::Config;
pub use log::Log;
pub use state::AppState;
