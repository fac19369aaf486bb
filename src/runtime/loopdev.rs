//! Loop devices: attach an image read-only with autoclear, and detach one that is ours.
//!
//! It owns the only `ioctl`s of the runtime, on `/dev/loop-control` and `/dev/loopN`. It never
//! detaches a device whose backing file is not the one it attached (the number may have been
//! reused by someone else since), and never leaves a device attached on an error path.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::error::RuntimeError;

// <linux/loop.h>: a stable kernel ABI, not exported by the libc crate.
const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_GET_STATUS64: libc::c_ulong = 0x4C05;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_NAME_SIZE: usize = 64;

#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

impl LoopInfo64 {
    fn zeroed() -> LoopInfo64 {
        LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: 0,
            lo_file_name: [0; LO_NAME_SIZE],
            lo_crypt_name: [0; LO_NAME_SIZE],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        }
    }
}

/// An attached loop device. `open` keeps the device referenced: with autoclear, the device
/// frees itself when the last reference goes, so drop it only once the filesystem on it is
/// mounted.
pub struct Attached {
    pub record: LoopRecord,
    pub open: File,
}

/// What teardown needs to find the device again and check it is still ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopRecord {
    pub path: PathBuf,
    pub backing_dev: u64,
    pub backing_ino: u64,
}

/// Attaches `image` read-only with autoclear (`LOOP_CONFIGURE`, or `LOOP_SET_FD` and
/// `LOOP_SET_STATUS64` on kernels before 5.8). Retries when another process takes the free
/// device first.
pub fn attach_read_only(image: &Path) -> Result<Attached, RuntimeError> {
    let backing = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(image)
        .map_err(RuntimeError::io(format!(
            "open root volume {}",
            image.display()
        )))?;
    let meta = backing
        .metadata()
        .map_err(RuntimeError::io("stat root volume"))?;
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")
        .map_err(RuntimeError::io("open /dev/loop-control"))?;
    let mut info = LoopInfo64::zeroed();
    info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
    let name = image.as_os_str().as_encoded_bytes();
    let n = name.len().min(LO_NAME_SIZE - 1);
    info.lo_file_name[..n].copy_from_slice(&name[..n]);

    let mut last = Errno::EBUSY;
    for _ in 0..16 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number or -1;
        // `control` is an open descriptor for the whole call.
        let num =
            Errno::result(unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) })
                .map_err(RuntimeError::sys("LOOP_CTL_GET_FREE"))?;
        let path = PathBuf::from(format!("/dev/loop{num}"));
        let dev = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(RuntimeError::io(format!("open {}", path.display())))?;
        match configure(&dev, &backing, &info) {
            Ok(()) => {
                let record = LoopRecord {
                    path,
                    backing_dev: meta.dev(),
                    backing_ino: meta.ino(),
                };
                return Ok(Attached { record, open: dev });
            }
            Err(Errno::EBUSY) => last = Errno::EBUSY,
            Err(e) => return Err(RuntimeError::sys(format!("attach {}", path.display()))(e)),
        }
    }
    Err(RuntimeError::sys(
        "attach loop device (every free device was taken)",
    )(last))
}

fn configure(dev: &File, backing: &File, info: &LoopInfo64) -> Result<(), Errno> {
    let config = LoopConfig {
        fd: u32::try_from(backing.as_raw_fd()).map_err(|_| Errno::EBADF)?,
        block_size: 0,
        info: *info,
        reserved: [0; 8],
    };
    // SAFETY: LOOP_CONFIGURE reads one `struct loop_config`, which `LoopConfig` mirrors
    // (repr(C), same field order and sizes); the pointer is valid for the call.
    let r = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            LOOP_CONFIGURE as _,
            &config as *const LoopConfig,
        )
    };
    match Errno::result(r) {
        Ok(_) => return Ok(()),
        Err(Errno::EINVAL | Errno::ENOTTY) => {} // before Linux 5.8: the two-step way
        Err(e) => return Err(e),
    }
    // SAFETY: LOOP_SET_FD takes a file descriptor by value; `backing` is open for the call.
    Errno::result(unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_SET_FD as _, backing.as_raw_fd()) })?;
    // SAFETY: LOOP_SET_STATUS64 reads one `struct loop_info64`, mirrored by `LoopInfo64`.
    let r = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            LOOP_SET_STATUS64 as _,
            info as *const LoopInfo64,
        )
    };
    if let Err(e) = Errno::result(r) {
        // SAFETY: LOOP_CLR_FD takes no argument; it undoes the LOOP_SET_FD above.
        let _ = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CLR_FD as _) };
        return Err(e);
    }
    Ok(())
}

/// Detaches the device if it is still bound to our backing file. A device still in use only
/// gets autoclear set by the kernel (it frees itself on its last close); a free device is fine.
pub fn detach(record: &LoopRecord) -> Result<(), RuntimeError> {
    let dev = match File::open(&record.path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(RuntimeError::io(format!("open {}", record.path.display()))(
                e,
            ));
        }
    };
    let mut info = LoopInfo64::zeroed();
    // SAFETY: LOOP_GET_STATUS64 writes one `struct loop_info64` into `info`, which is large
    // enough and valid for the call.
    let r = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            LOOP_GET_STATUS64 as _,
            &mut info as *mut LoopInfo64,
        )
    };
    match Errno::result(r) {
        Err(Errno::ENXIO) => return Ok(()), // already free
        Err(e) => {
            return Err(RuntimeError::sys(format!(
                "status of {}",
                record.path.display()
            ))(e));
        }
        Ok(_) => {}
    }
    if info.lo_device != record.backing_dev || info.lo_inode != record.backing_ino {
        return Ok(()); // reused by someone else since
    }
    // SAFETY: LOOP_CLR_FD takes no argument.
    match Errno::result(unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CLR_FD as _) }) {
        Ok(_) | Err(Errno::ENXIO) => Ok(()),
        Err(e) => Err(RuntimeError::sys(format!(
            "detach {}",
            record.path.display()
        ))(e)),
    }
}

/// True while `/dev/loopN` is bound to a file (`/sys/block/loopN/loop` exists).
pub fn is_bound(path: &Path) -> bool {
    path.file_name()
        .map(|n| Path::new("/sys/block").join(n).join("loop").exists())
        .unwrap_or(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn abi_structs_have_the_kernel_sizes() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
    }
}
