"""Lab 09 (file storage): the graded exercises' checks, read from the live lab.

The checks read the shared file system's records and try the share for real from
inside the guests: they mount it at a scratch folder of their own
(``/tmp/check-SHARE``), try what the exercise is about, and unmount again, so a
learner's own mounts are never touched.
"""

from ..exercise import Check, exercise

CHECK_TIMEOUT = 60


def _share(lab, name):
    try:
        return lab.shared_file_system.get_share(name)
    except Exception:
        return None


def _address(lab, server_name):
    server = lab.compute.get_server(server_name)
    found = server.addresses.get(lab.host.network) or []
    return server, (found[0] if found else None)


def _try(server, share, command):
    """Mount ``share`` at a scratch folder in ``server``, run ``command`` there (``$M`` is the folder), unmount.

    Returns ``(mounted, ok)``: whether the mount worked and whether the command did.
    """
    folder = f"/tmp/check-{share.name}"
    script = (f"{share.mount_command(folder)} || exit 90; cd {folder} && ( M={folder}; {command} ); "
              f"rc=$?; cd /; umount {folder}; rmdir {folder}; exit $rc")
    result = server.run(script, timeout=CHECK_TIMEOUT)
    if result.exit_status == 90:
        server.run(f"rmdir {folder} 2>/dev/null", timeout=CHECK_TIMEOUT)
        return False, False
    return True, result.ok


@exercise("09.1", title="A writer and a read-only reader", points=2)
def writer_and_reader(lab):
    """Share ex-docs: web1 may write, web2 may only read; tried from both guests."""
    share = _share(lab, "ex-docs")
    yield Check("a share named ex-docs exists", share is not None,
                hint="lab.shared_file_system.create_share('ex-docs', size=1)")
    web1, ip1 = _address(lab, "web1")
    web2, ip2 = _address(lab, "web2")
    rule1, rule2 = share.rule_for(ip1), share.rule_for(ip2)
    yield Check("a rule lets web1's address read and write", rule1 is not None and rule1.access_level == "rw",
                hint="share.allow(<web1's address>, 'rw')")
    yield Check("a rule lets web2's address only read", rule2 is not None and rule2.access_level == "ro",
                hint="share.allow(<web2's address>, 'ro')")
    mounted, wrote = _try(web1, share, "touch $M/.check && rm $M/.check")
    yield Check("web1 mounts ex-docs and writes to it", mounted and wrote)
    mounted, wrote = _try(web2, share, "touch $M/.check")
    yield Check("web2 mounts ex-docs but cannot write to it", mounted and not wrote)


@exercise("09.2", title="Written on one server, read on the other", points=2)
def written_and_read(lab, answer=None):
    """hello.txt on ex-docs, and the text web2 reads from it."""
    share = _share(lab, "ex-docs")
    yield Check("a share named ex-docs exists", share is not None, hint="do exercise 09.1 first")
    yield Check("answer is the text you read on web2", isinstance(answer, str) and answer.strip() != "",
                hint='answer = web2.run("cat /mnt/.../hello.txt").stdout')
    web2, _ = _address(lab, "web2")
    folder = f"/tmp/check-{share.name}"
    result = web2.run(f"{share.mount_command(folder)} && cat {folder}/hello.txt; rc=$?; "
                      f"umount {folder} 2>/dev/null; rmdir {folder}; exit $rc", timeout=CHECK_TIMEOUT)
    yield Check("web2 reads hello.txt from ex-docs", result.ok, hint="write it from web1 into the share's top folder")
    yield Check("answer is what hello.txt holds", answer.strip() == result.stdout.strip(),
                hint=f"web2 reads {result.stdout.strip()[:40]!r}")


@exercise("09.3", title="Grow a share while it is mounted", points=2)
def grow_mounted(lab, answer=None):
    """ex-docs grown to 3 GiB, and the size in KiB that df reports for it inside web1."""
    share = _share(lab, "ex-docs")
    yield Check("a share named ex-docs exists", share is not None, hint="do exercise 09.1 first")
    yield Check("ex-docs is 3 GiB", share.size == 3, hint="share.extend(3)")
    web1, _ = _address(lab, "web1")
    mounts = web1.run("cat /proc/mounts", timeout=CHECK_TIMEOUT).stdout.splitlines()
    points = [line.split()[1] for line in mounts if line.split()[0] == share.export_location]
    yield Check("web1 has ex-docs mounted", bool(points), hint="web1.run(share.mount_command('/mnt/docs'))")
    seen = int(web1.run(f"df -Pk {points[0]} | tail -1", timeout=CHECK_TIMEOUT).stdout.split()[1])
    yield Check("answer is a number of KiB", isinstance(answer, int) and not isinstance(answer, bool),
                hint="answer = <KiB>, the second column of `df -Pk MOUNTPOINT`")
    yield Check("answer is the size df reports in web1 now", answer == seen, hint="read it after the extend")
    yield Check("web1 sees more than 2 GiB", seen > 2 * 2**20)


@exercise("09.4", title="Cut a client off", points=2)
def cut_off(lab):
    """web2 can no longer mount ex-docs; web1 still can."""
    share = _share(lab, "ex-docs")
    yield Check("a share named ex-docs exists", share is not None, hint="do exercise 09.1 first")
    web1, ip1 = _address(lab, "web1")
    web2, ip2 = _address(lab, "web2")
    yield Check("no rule lets web2's address in", share.rule_for(ip2) is None,
                hint="share.deny(<the rule>) - and mind rules for whole networks")
    mounted, _ = _try(web2, share, "true")
    yield Check("web2 cannot mount ex-docs", not mounted)
    mounted, _ = _try(web1, share, "true")
    yield Check("web1 still can", mounted, hint="keep web1's rule")
