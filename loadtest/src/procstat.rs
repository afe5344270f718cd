//! CPU time and memory of a process from `/proc` (the server, by `--server-pid`, and the load
//! generator itself), and CPU pinning (`--server-cpus`).

use std::{fs, io};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// One reading of a process's counters.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ProcSample {
    /// User + system CPU time, in seconds.
    pub cpu_s: f64,
    /// Resident set size, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident set size, KiB (`VmHWM`).
    pub hwm_kib: u64,
}

/// Clock ticks per second of `/proc/<pid>/stat`'s times (100 on Linux).
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// `utime + stime` in clock ticks from the text of `/proc/<pid>/stat`. The command name (field 2)
/// is in parentheses and may contain spaces or parentheses, so fields are counted after the
/// *last* `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // After the name: state(3) ppid(4) … utime(14) stime(15); index 0 here is field 3.
    let mut fields = after.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` and `VmHWM` in KiB from the text of `/proc/<pid>/status` (0 when absent, e.g. for a
/// zombie).
pub fn parse_status_memory(status: &str) -> (u64, u64) {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Reads `/proc/<pid>` (`pid` `None` = this process).
pub fn sample(pid: Option<u32>) -> io::Result<ProcSample> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_owned(),
    };
    let stat = fs::read_to_string(format!("{dir}/stat"))?;
    let status = fs::read_to_string(format!("{dir}/status"))?;
    let ticks = parse_stat_ticks(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed stat"))?;
    let (rss_kib, hwm_kib) = parse_status_memory(&status);
    Ok(ProcSample {
        cpu_s: ticks as f64 / clock_ticks_per_sec() as f64,
        rss_kib,
        hwm_kib,
    })
}

/// Parses a CPU list like `0`, `0,2` or `0-3,6`.
pub fn parse_cpu_list(list: &str) -> Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.trim(), hi.trim()),
            None => (part, part),
        };
        let lo: usize = lo.parse().with_context(|| format!("bad CPU {lo:?}"))?;
        let hi: usize = hi.parse().with_context(|| format!("bad CPU {hi:?}"))?;
        if lo > hi || hi >= libc::CPU_SETSIZE as usize {
            bail!("bad CPU range {part:?}");
        }
        cpus.extend(lo..=hi);
    }
    if cpus.is_empty() {
        bail!("empty CPU list {list:?}");
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

fn set_affinity(tid: libc::pid_t, cpus: &[usize]) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET is given indices below
    // CPU_SETSIZE (checked by parse_cpu_list), and the set outlives the call.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        if libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// CPUs this process may run on.
pub fn own_cpus() -> Vec<usize> {
    // SAFETY: as in set_affinity; CPU_ISSET only reads the set the kernel filled.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// Pins every thread of `server_pid` to `server_cpus` (threads it creates later inherit it) and
/// this process to the other CPUs it was allowed on. Returns the load generator's CPUs.
pub fn pin(server_pid: u32, server_cpus: &[usize]) -> Result<Vec<usize>> {
    let tasks = fs::read_dir(format!("/proc/{server_pid}/task"))
        .with_context(|| format!("listing the threads of server pid {server_pid}"))?;
    for task in tasks {
        let tid: libc::pid_t = match task?.file_name().to_str().and_then(|s| s.parse().ok()) {
            Some(tid) => tid,
            None => continue,
        };
        match set_affinity(tid, server_cpus) {
            Ok(()) => {}
            // The thread ended meanwhile.
            Err(err) if err.raw_os_error() == Some(libc::ESRCH) => {}
            Err(err) => return Err(err).context(format!("pinning server thread {tid}")),
        }
    }
    let mine: Vec<usize> = own_cpus()
        .into_iter()
        .filter(|cpu| !server_cpus.contains(cpu))
        .collect();
    if mine.is_empty() {
        bail!("no CPU left for the load generator beside the server's {server_cpus:?}");
    }
    // Pid 0 = the calling thread only; every thread of the process must move.
    for task in fs::read_dir("/proc/self/task").context("listing own threads")? {
        if let Some(tid) = task?.file_name().to_str().and_then(|s| s.parse().ok()) {
            let _ = set_affinity(tid, &mine);
        }
    }
    Ok(mine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_names() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 100 2000000 500 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(325));
        assert_eq!(parse_stat_ticks("1 (x) S 1 2"), None);
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn parses_status_memory() {
        let status = "Name:\tspacecast\nVmPeak:\t  900000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\nThreads:\t9\n";
        assert_eq!(parse_status_memory(status), (40_960, 51_200));
        assert_eq!(parse_status_memory("Name:\tzombie\n"), (0, 0));
    }

    #[test]
    fn samples_this_process() {
        let s = sample(None).unwrap();
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib);
        assert!(s.cpu_s >= 0.0);
        assert_eq!(clock_ticks_per_sec(), 100);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0").unwrap(), [0]);
        assert_eq!(parse_cpu_list("3,0-1,1").unwrap(), [0, 1, 3]);
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("2-1").is_err());
        assert!(parse_cpu_list("a").is_err());
        assert!(parse_cpu_list("99999").is_err());
    }
}
