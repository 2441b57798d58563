//! Where each controller of a container lives: the cgroup mounts (from mountinfo) and the
//! container's own cgroup (from `/proc/<pid>/cgroup`, else Docker's default paths).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

/// The v1 controllers the source reads.
pub(super) const V1_CONTROLLERS: [&str; 5] = ["cpu", "cpuacct", "memory", "blkio", "pids"];

/// One cgroup mount: where it is mounted, and which cgroup path its root is (not `/` when the
/// agent runs in a cgroup namespace or with a bind-mounted subtree).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupMount {
    /// The mount point, e.g. `/sys/fs/cgroup/memory`.
    pub mount_point: PathBuf,
    /// The cgroup path at the mount's root, e.g. `/`.
    pub root: String,
}

impl CgroupMount {
    /// The directory of the cgroup `path` (as `/proc/<pid>/cgroup` names it) under this mount.
    fn dir_of(&self, path: &str) -> Option<PathBuf> {
        let rel = if self.root == "/" {
            path
        } else {
            path.strip_prefix(self.root.as_str())?
        };
        Some(self.mount_point.join(rel.trim_start_matches('/')))
    }
}

/// The machine's cgroup mounts: v1 hierarchies by controller, and the v2 (unified) mount.
///
/// A controller is read from v1 when a v1 hierarchy has it (pure v1 and hybrid hosts), else
/// from v2 (pure v2 hosts, where the unified mount has every controller).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupLayout {
    /// v1 hierarchies keyed by controller (`cpu`, `cpuacct`, `memory`, `blkio`, `pids`).
    pub v1: HashMap<String, CgroupMount>,
    /// The cgroup2 mount, if any.
    pub v2: Option<CgroupMount>,
}

impl CgroupLayout {
    /// Reads `<procfs>/self/mountinfo`.
    pub fn detect(procfs: &Path) -> io::Result<CgroupLayout> {
        let text = std::fs::read_to_string(procfs.join("self/mountinfo"))?;
        Ok(CgroupLayout::from_mountinfo(&text))
    }

    /// A pure v2 host whose unified hierarchy is mounted at `mount_point` (how the fixture tests
    /// point the source at a copied tree).
    pub fn unified(mount_point: impl Into<PathBuf>) -> CgroupLayout {
        CgroupLayout {
            v1: HashMap::new(),
            v2: Some(CgroupMount {
                mount_point: mount_point.into(),
                root: "/".into(),
            }),
        }
    }

    /// Parses mountinfo: `id parent maj:min root mount_point options [optional...] - fstype source super_options`.
    pub fn from_mountinfo(text: &str) -> CgroupLayout {
        let mut layout = CgroupLayout::default();
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            if left.len() < 5 || right.len() < 3 {
                continue;
            }
            let mount = CgroupMount {
                mount_point: PathBuf::from(left[4]),
                root: left[3].to_string(),
            };
            match right[0] {
                "cgroup2" => {
                    layout.v2.get_or_insert(mount);
                }
                "cgroup" => {
                    for option in right[2].split(',') {
                        if V1_CONTROLLERS.contains(&option) {
                            layout.v1.entry(option.to_string()).or_insert_with(|| mount.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        layout
    }

    /// Whether the containers' counters come from v1 files.
    pub(super) fn is_v1(&self) -> bool {
        !self.v1.is_empty()
    }
}

/// A container's cgroup directories, found once and kept while its pid stays the same.
#[derive(Clone, Debug, Default)]
pub(super) struct ContainerDirs {
    /// v1: directory per controller (same order as [`V1_CONTROLLERS`]); v2: only `[0]`, the
    /// container's unified directory.
    pub dirs: [Option<PathBuf>; 5],
}

/// Finds the container's directories: first from `/proc/<pid>/cgroup`, else Docker's cgroupfs
/// path (`<mount>/docker/<id>`), else its systemd path (`<mount>/system.slice/docker-<id>.scope`).
pub(super) fn resolve(layout: &CgroupLayout, procfs: &Path, id: &str, pid: u32) -> ContainerDirs {
    let proc_cgroup = if pid > 0 {
        std::fs::read_to_string(procfs.join(pid.to_string()).join("cgroup")).unwrap_or_default()
    } else {
        String::new()
    };
    let find = |mount: &CgroupMount, controller: Option<&str>| -> Option<PathBuf> {
        let from_proc = proc_cgroup.lines().find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let matches = match controller {
                Some(c) => controllers.split(',').any(|x| x == c),
                None => controllers.is_empty(),
            };
            if matches { mount.dir_of(path) } else { None }
        });
        let candidates = [
            from_proc,
            Some(mount.mount_point.join("docker").join(id)),
            Some(
                mount
                    .mount_point
                    .join("system.slice")
                    .join(format!("docker-{id}.scope")),
            ),
        ];
        // A path from /proc that is just the mount's root means the container shares our
        // cgroup view (or the pid is gone), which would report the whole host: skip it.
        candidates
            .into_iter()
            .flatten()
            .find(|p| p != &mount.mount_point && p.is_dir())
    };
    let mut dirs = ContainerDirs::default();
    if layout.is_v1() {
        for (slot, controller) in dirs.dirs.iter_mut().zip(V1_CONTROLLERS) {
            *slot = layout.v1.get(controller).and_then(|m| find(m, Some(controller)));
        }
    } else if let Some(v2) = &layout.v2 {
        dirs.dirs[0] = find(v2, None);
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 /process_api /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime shared:5 - cgroup cgroup rw,blkio
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_mountinfo_gives_v1_per_controller() {
        let layout = CgroupLayout::from_mountinfo(HYBRID);
        assert!(layout.is_v1());
        assert_eq!(layout.v1["cpu"].mount_point, PathBuf::from("/sys/fs/cgroup/cpu"));
        assert_eq!(
            layout.v1["cpuacct"].mount_point,
            PathBuf::from("/sys/fs/cgroup/cpuacct")
        );
        assert_eq!(layout.v1["memory"].root, "/process_api");
        assert!(!layout.v1.contains_key("pids"));
        assert_eq!(
            layout.v2.as_ref().unwrap().mount_point,
            PathBuf::from("/sys/fs/cgroup/unified")
        );
        let memory = &layout.v1["memory"];
        assert_eq!(
            memory.dir_of("/process_api/x"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/x"))
        );
        assert_eq!(memory.dir_of("/docker/x"), None);
    }

    #[test]
    fn co_mounted_controllers_share_a_mount() {
        let layout =
            CgroupLayout::from_mountinfo("30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n");
        assert_eq!(layout.v1["cpu"], layout.v1["cpuacct"]);
    }
}
