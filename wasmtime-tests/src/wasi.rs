//! The WASI preview1 functions proxy-wasm-cpp-host gives a module (`src/exports.cc`,
//! `wasi_unstable_*`), with the same answers: stdout/stderr go to the log (info/error),
//! nothing else of a file system exists, the clocks are the virtual clock, and `random_get`
//! is seeded so that a run repeats.

use wasmtime::{Caller, Extern, Linker};

use crate::host::VmState;

type C<'a> = Caller<'a, VmState>;

const ESUCCESS: u32 = 0;
const EBADF: u32 = 8;
const EFAULT: u32 = 21;
const EINVAL: u32 = 28;
const ENOENT: u32 = 44;
const ENOSYS: u32 = 52;
const ENOTSUP: u32 = 58;
/// `PROXY_WASM_HOST_WASI_RANDOM_GET_MAX_SIZE_BYTES`.
const RANDOM_GET_MAX: u32 = 64 * 1024;

fn mem_write(c: &mut C<'_>, ptr: u32, bytes: &[u8]) -> bool {
    let Some(m) = c.get_export("memory").and_then(Extern::into_memory) else {
        return false;
    };
    let start = ptr as usize;
    match m
        .data_mut(&mut *c)
        .get_mut(start..start.saturating_add(bytes.len()))
    {
        Some(d) if d.len() == bytes.len() => {
            d.copy_from_slice(bytes);
            true
        }
        _ => false,
    }
}

fn mem_read(c: &mut C<'_>, ptr: u32, len: u32) -> Option<Vec<u8>> {
    let m = c.get_export("memory").and_then(Extern::into_memory)?;
    let start = ptr as usize;
    m.data(&*c)
        .get(start..start.checked_add(len as usize)?)
        .map(<[u8]>::to_vec)
}

fn env_strings(s: &VmState) -> Vec<Vec<u8>> {
    s.env
        .iter()
        .map(|(k, v)| format!("{k}={v}\0").into_bytes())
        .collect()
}

pub fn add_to_linker(l: &mut Linker<VmState>) -> wasmtime::Result<()> {
    const M: &str = "wasi_snapshot_preview1";
    l.func_wrap(
        M,
        "fd_write",
        |mut c: C<'_>, fd: u32, iovs: u32, iovs_len: u32, nwritten: u32| -> u32 {
            let level = match fd {
                1 => crate::abi::log_level::INFO,
                2 => crate::abi::log_level::ERROR,
                _ => return EBADF,
            };
            let mut s = Vec::new();
            for i in 0..iovs_len {
                let Some(iov) = mem_read(&mut c, iovs.wrapping_add(i * 8), 8) else {
                    return EFAULT;
                };
                let buf = u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                if len > 0 {
                    let Some(b) = mem_read(&mut c, buf, len) else {
                        return EFAULT;
                    };
                    s.extend_from_slice(&b);
                }
            }
            let written = s.len() as u32;
            if !s.is_empty() {
                if s.last() == Some(&b'\n') {
                    s.pop();
                }
                let st = c.data();
                let mut sh = st.shared.borrow_mut();
                let at_ms = sh.now_ms();
                sh.logs.push(crate::host::LogRecord {
                    vm: st.vm,
                    context: st.ctx_id(),
                    level,
                    message: String::from_utf8_lossy(&s).into_owned(),
                    at_ms,
                });
            }
            if mem_write(&mut c, nwritten, &written.to_le_bytes()) {
                ESUCCESS
            } else {
                EFAULT
            }
        },
    )?;
    l.func_wrap(
        M,
        "fd_read",
        |_c: C<'_>, _fd: u32, _iovs: u32, _len: u32, _nread: u32| -> u32 { ENOSYS },
    )?;
    l.func_wrap(
        M,
        "fd_seek",
        |_c: C<'_>, _fd: u32, _off: i64, _whence: u32, _newoff: u32| -> u32 { ESUCCESS },
    )?;
    l.func_wrap(M, "fd_close", |_c: C<'_>, _fd: u32| -> u32 { ESUCCESS })?;
    l.func_wrap(
        M,
        "fd_fdstat_get",
        |mut c: C<'_>, fd: u32, stat: u32| -> u32 {
            if fd != 1 && fd != 2 {
                return EBADF;
            }
            let mut st = [0u8; 24];
            st[8] = 64; // fs_rights_base = FD_WRITE
            mem_write(&mut c, stat, &st);
            ESUCCESS
        },
    )?;
    l.func_wrap(
        M,
        "fd_prestat_get",
        |_c: C<'_>, _fd: u32, _buf: u32| -> u32 { EBADF },
    )?;
    l.func_wrap(
        M,
        "fd_prestat_dir_name",
        |_c: C<'_>, _fd: u32, _p: u32, _l: u32| -> u32 { ENOSYS },
    )?;
    l.func_wrap(
        M,
        "path_open",
        |_c: C<'_>,
         _fd: u32,
         _df: u32,
         _p: u32,
         _pl: u32,
         _of: u32,
         _rb: i64,
         _ri: i64,
         _ff: u32,
         _out: u32|
         -> u32 { ENOENT },
    )?;
    l.func_wrap(
        M,
        "environ_sizes_get",
        |mut c: C<'_>, count_ptr: u32, size_ptr: u32| -> u32 {
            let envs = env_strings(c.data());
            let size: usize = envs.iter().map(Vec::len).sum();
            if mem_write(&mut c, count_ptr, &(envs.len() as u32).to_le_bytes())
                && mem_write(&mut c, size_ptr, &(size as u32).to_le_bytes())
            {
                ESUCCESS
            } else {
                EFAULT
            }
        },
    )?;
    l.func_wrap(
        M,
        "environ_get",
        |mut c: C<'_>, mut array: u32, mut buf: u32| -> u32 {
            for e in env_strings(c.data()) {
                if !mem_write(&mut c, array, &buf.to_le_bytes()) || !mem_write(&mut c, buf, &e) {
                    return EFAULT;
                }
                buf = buf.wrapping_add(e.len() as u32);
                array = array.wrapping_add(4);
            }
            ESUCCESS
        },
    )?;
    l.func_wrap(
        M,
        "args_sizes_get",
        |mut c: C<'_>, argc: u32, size: u32| -> u32 {
            if mem_write(&mut c, argc, &0u32.to_le_bytes())
                && mem_write(&mut c, size, &0u32.to_le_bytes())
            {
                ESUCCESS
            } else {
                EFAULT
            }
        },
    )?;
    l.func_wrap(M, "args_get", |_c: C<'_>, _argv: u32, _buf: u32| -> u32 {
        ESUCCESS
    })?;
    l.func_wrap(
        M,
        "clock_time_get",
        |mut c: C<'_>, id: u32, _precision: i64, out: u32| -> u32 {
            let t = {
                let sh = c.data().shared.borrow();
                match id {
                    0 => sh.now_ns,
                    1 => sh.now_ns.saturating_sub(sh.monotonic_origin_ns),
                    _ => return ENOTSUP,
                }
            };
            if mem_write(&mut c, out, &t.to_le_bytes()) {
                ESUCCESS
            } else {
                EFAULT
            }
        },
    )?;
    l.func_wrap(M, "random_get", |mut c: C<'_>, buf: u32, len: u32| -> u32 {
        if len > RANDOM_GET_MAX {
            return EINVAL;
        }
        let mut bytes = vec![0u8; len as usize];
        c.data_mut().rng.fill(&mut bytes);
        if mem_write(&mut c, buf, &bytes) {
            ESUCCESS
        } else {
            EFAULT
        }
    })?;
    l.func_wrap(M, "proc_exit", |c: C<'_>, code: u32| {
        // cpp-host only logs it; the module goes on.
        let st = c.data();
        let mut sh = st.shared.borrow_mut();
        sh.anomalies
            .push(format!("vm {}: proc_exit({code})", st.vm));
    })?;
    Ok(())
}
