//! Tern: a single-threaded device supervisor for low-RAM embedded Linux.
//!
//! The crate is split the way `DESIGN.md` draws it: `reactor` owns every file descriptor of the
//! loop, `http` is the sans-IO HTTP/1.1 framing shared by the control socket and the hub client,
//! `api` routes requests to handlers, `store` owns the on-disk layout and its durability rules,
//! `config` reads the KEY=VALUE configuration, and `spec` holds the state JSON types.

pub mod api;
pub mod cli;
pub mod clock_floor;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod device;
pub mod engine;
pub mod http;
pub mod logger;
pub mod net;
pub mod reactor;
pub mod runtime;
pub mod secureboot;
pub mod sig;
pub mod sig_command;
pub mod spec;
pub mod store;
pub mod sysinfo;
pub mod utc;
