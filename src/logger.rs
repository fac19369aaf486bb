//! Tern's logger: one line per record, `<UTC time> <LEVEL> <subsystem>: <message>`, to stderr
//! and, once the storage is known, to `logs/tern.log` under it (rotated to `tern.log.1` at a
//! size cap, so the log can never fill the flash).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};

struct FileSink {
    path: PathBuf,
    file: File,
    written: u64,
    cap: u64,
}

struct Logger {
    level: AtomicU8,
    file: Mutex<Option<FileSink>>,
}

static LOGGER: Logger = Logger {
    level: AtomicU8::new(3),
    file: Mutex::new(None),
};

/// Pantavisor's PV_LOG_LEVEL: 0 fatal, 1 error, 2 warn, 3 info, 4 debug, 5 all.
fn filter_for(pv_level: u8) -> LevelFilter {
    match pv_level {
        0 | 1 => LevelFilter::Error,
        2 => LevelFilter::Warn,
        3 => LevelFilter::Info,
        4 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

pub fn init(pv_level: u8) {
    let _ = log::set_logger(&LOGGER);
    set_level(pv_level);
}

pub fn set_level(pv_level: u8) {
    LOGGER.level.store(pv_level, Ordering::Relaxed);
    log::set_max_level(filter_for(pv_level));
}

/// Also write records to `path`, rotating it when it passes `cap` bytes.
pub fn log_to_file(path: PathBuf, cap: u64) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new().create(true).append(true).open(&path)?;
    let written = file.metadata().map(|m| m.len()).unwrap_or(0);
    if let Ok(mut slot) = LOGGER.file.lock() {
        *slot = Some(FileSink {
            path,
            file,
            written,
            cap: cap.max(4096),
        });
    }
    Ok(())
}

impl Log for Logger {
    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        meta.level() <= filter_for(self.level.load(Ordering::Relaxed))
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let level = match record.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        let line = format!(
            "{} {level} {}\n",
            crate::utc::format_utc(secs),
            record.args()
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
        if let Ok(mut slot) = self.file.lock()
            && let Some(sink) = slot.as_mut()
        {
            {
                if sink.written + line.len() as u64 > sink.cap {
                    let rotated = sink.path.with_extension("log.1");
                    let _ = std::fs::rename(&sink.path, rotated);
                    match OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&sink.path)
                    {
                        Ok(f) => {
                            sink.file = f;
                            sink.written = 0;
                        }
                        Err(_) => {
                            *slot = None;
                            return;
                        }
                    }
                }
                if sink.file.write_all(line.as_bytes()).is_ok() {
                    sink.written += line.len() as u64;
                }
            }
        }
    }

    fn flush(&self) {}
}
