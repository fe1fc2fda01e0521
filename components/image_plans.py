"""An image's Dockerfile read for each platform it is built for, with the program's refusals: the one reading that
planning (components/image.py) and `python -m cli.explain` share, so explain never prints a tag the program refuses.
No Pulumi import.
"""
from __future__ import annotations

from pathlib import Path

from buildcontext import stages
from components import remote_inputs
from components.config.schema import ImageSettings, image_platforms


def image_label(index: int, image: ImageSettings) -> str:
    """How messages name the image: `acr-publish:images[<index>] (<name>)`."""
    return f"acr-publish:images[{index}] ({image.name})"


def read_image_plans(label: str, image: ImageSettings, dockerfile: Path,
                     problems: list[str]) -> dict[str, remote_inputs.ImageInputs] | None:
    """Platform -> the image's Dockerfile (at `dockerfile`) read for its build inputs (buildcontext/stages.py), once
    per platform it is built for: a base by tag is another manifest per platform, an ADD URL with ${TARGETARCH}
    another file. None when it cannot be read: a problem in `problems`, except under remoteInputs: ignore (the
    guard then counts every stage as shipped) and for an unknown target (the settings' to report; the engine refuses
    it). A word that would crash the engine is refused in every mode."""
    try:
        data = dockerfile.read_bytes()
        return {platform: remote_inputs.ImageInputs(label, image.dockerfile, image.remote_inputs,
                                                    stages.read_plan(data, image.build_args, image.target, platform),
                                                    platform)
                for platform in image_platforms(image)}
    except (OSError, stages.DockerfileProblem) as err:
        crashes = isinstance(err, stages.EmptyTrimPattern)
        if (image.remote_inputs != "ignore" or crashes) and not isinstance(err, stages.UnknownTarget):
            line = f" line {err.line}" if getattr(err, "line", 0) else ""
            reason = err.strerror if isinstance(err, OSError) else str(err)
            problems.append(f"{label}: {image.dockerfile}{line}: {reason}" + ("" if crashes else (
                "; the base images and remote sources cannot be read from it (fix the line, or set "
                "remoteInputs: ignore)")))
        return None
