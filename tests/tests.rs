//! Integration tests of the m2m-edge binary, as one test binary (modules below), talking to real
//! processes and real peers on 127.0.0.1.

mod acme_direct;
mod echo;
mod edge;
mod holding;
mod multiplex;
mod operations;
mod session;
mod support;
