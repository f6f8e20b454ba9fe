# The images package's loader and its record (rendered into its load script,
# its postrm and the appliance's postrm). The record lists the images it put
# into Docker, "REF ID" a line: upgrades and purge remove those only.
IMAGES_DIR={{ images.dir }}
IMAGES_LIST={{ images.list }}
IMAGES_LOADED={{ images.loaded }}

# image_id REF: Docker's id for REF, or nothing.
image_id() {
    docker image inspect --format '{% raw %}{{.Id}}{% endraw %}' "$1" 2>/dev/null || true
}

# listed REF [ID] FILE: whether FILE has a line for REF (and ID).
listed() {
    if [ "$#" -eq 3 ]; then
        awk -v ref="$1" -v id="$2" '$1 == ref && $2 == id { found = 1 } END { exit !found }' "$3"
    else
        awk -v ref="$1" '$1 == ref { found = 1 } END { exit !found }' "$2"
    fi
}

# images_forget [NAMED]: remove the recorded images whose REF the file NAMED
# (the list of a newer package) does not name, if Docker still holds them as
# loaded. One in use by a container stays on the record, for the next try.
images_forget() {
    [ -s "$IMAGES_LOADED" ] || return 0
    if ! docker info >/dev/null 2>&1; then
        echo "Docker is not answering: the images in $IMAGES_LOADED stay in it" >&2
        return 0
    fi
    keep="$IMAGES_LOADED.new"
    : >"$keep"
    while read -r ref id; do
        if [ -n "${1:-}" ] && listed "$ref" "$1"; then
            echo "$ref $id" >>"$keep"
        elif [ "$(image_id "$ref")" = "$id" ]; then
            if docker rmi "$ref" >/dev/null 2>&1; then
                echo "removed image $ref"
            else
                echo "image $ref is still used by a container: kept (removed at the next upgrade or purge)" >&2
                echo "$ref $id" >>"$keep"
            fi
        fi
    done <"$IMAGES_LOADED"
    if [ -s "$keep" ]; then mv "$keep" "$IMAGES_LOADED"; else rm -f "$keep" "$IMAGES_LOADED"; fi
}

# images_tidy: the record's directory goes once the record is gone (purge).
images_tidy() {
    if [ ! -e "$IMAGES_LOADED" ] && [ -d "${IMAGES_LOADED%/*}" ]; then
        rm -f "${IMAGES_LOADED%/*}/lock"
        rmdir --ignore-fail-on-non-empty "${IMAGES_LOADED%/*}"
    fi
}

# images_load: put each listed image into Docker unless it holds that very
# image under that name, then forget the ones no longer listed. Exits 2 when
# Docker is not answering (the appliance's start runs the loader again).
images_load() {
    if ! docker info >/dev/null 2>&1; then
        echo "Docker is not answering: the images are loaded when {{ config.package }} starts" >&2
        return 2
    fi
    while read -r ref id file; do
        had=$(image_id "$ref")
        if [ "$had" = "$id" ]; then
            echo "image $ref: already in Docker"
            continue
        fi
        zstd -dcq "$IMAGES_DIR/$file" | docker load -q >/dev/null || true
        if [ "$(image_id "$ref")" != "$id" ]; then
            echo "could not load image $ref from $IMAGES_DIR/$file (is the disk full? see 'docker load')" >&2
            return 1
        fi
        echo "image $ref: loaded from $IMAGES_DIR/$file"
        if [ -s "$IMAGES_LOADED" ]; then
            # The image this one replaces, if it was ours, has lost its name: remove it.
            if [ -n "$had" ] && listed "$ref" "$had" "$IMAGES_LOADED"; then
                docker rmi "$had" >/dev/null 2>&1 || true
            fi
            awk -v ref="$ref" '$1 != ref' "$IMAGES_LOADED" >"$IMAGES_LOADED.new"
            mv "$IMAGES_LOADED.new" "$IMAGES_LOADED"
        fi
        echo "$ref $id" >>"$IMAGES_LOADED"
    done <"$IMAGES_LIST"
    images_forget "$IMAGES_LIST"
}
