//! The host binary against real plugins, over real sockets. One module per feature; the harness is
//! this crate's library (`tests/src`).

mod admin;
mod balancer;
mod cli;
mod compression;
mod config;
mod crashes;
mod deadlines;
mod fairness;
mod fixtures;
mod guide;
mod handover;
mod hardening;
mod health;
mod plugins;
mod proxy;
mod reload;
mod routing;
mod signals;
mod static_files;
mod streaming;
mod unload;
mod upgrade;
