//! Name resolution, sans-IO: the `/etc/hosts` and `resolv.conf` formats and the DNS wire format.
//!
//! Nothing here opens a file or a socket; the reactor's hub transport reads the files and sends
//! the packets. Every parser takes bytes it is handed and never trusts a length in them.

pub mod dns;
pub mod hosts;
