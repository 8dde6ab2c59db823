//! A TCP connection whose receive buffer is made small before it connects, so the window the
//! server sees stays small: a client that does not read fills up after a few KiB, and what the
//! server writes next stays in its own output queue (`--max-output`).

use std::net::{SocketAddr, TcpStream};
use std::os::fd::FromRawFd;

/// Connects to `addr` (IPv4) with `SO_RCVBUF` set to `bytes` before `connect()` (the kernel
/// doubles it and applies its minimum).
pub fn connect(addr: SocketAddr, bytes: i32) -> TcpStream {
    let SocketAddr::V4(v4) = addr else {
        panic!("small_rcvbuf::connect: IPv4 only, got {addr}")
    };
    // SAFETY: plain socket calls on a descriptor this function owns; `TcpStream` takes
    // ownership right after `socket()` so it is closed on every path.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket(): {}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let size: libc::c_int = bytes;
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect(): {}", std::io::Error::last_os_error());
        stream
    }
}
