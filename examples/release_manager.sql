-- The example Release Manager: the reference schema (docs/archive.md) and a few
-- releases over the packages in examples/archive. blat loads a `.sql` path
-- into an in-memory SQLite database at each run.
CREATE TABLE projects (project_id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL);
CREATE TABLE releases (
    release_id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects (project_id),
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    s3sync INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE packages (package_id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL);
CREATE TABLE package_versions (
    pv_id INTEGER PRIMARY KEY,
    package_id INTEGER NOT NULL REFERENCES packages (package_id),
    version TEXT NOT NULL
);
CREATE TABLE release_content (
    release_id INTEGER NOT NULL REFERENCES releases (release_id),
    pv_id INTEGER NOT NULL REFERENCES package_versions (pv_id)
);

INSERT INTO projects VALUES (1, 'PROJ'), (2, 'LEGACY');
INSERT INTO releases VALUES
    (1, 1, 'R1.0', 'closed', 0),
    (2, 1, 'R1.1', 'open', 1),
    (3, 1, 'R2.0', 'open', 0),
    (4, 2, 'R0.9', 'closed', 0);
INSERT INTO packages VALUES (1, 'jats'), (2, 'libfoo'), (3, 'tools'), (4, 'zlib'), (5, 'oldlib');
INSERT INTO package_versions VALUES
    (1, 1, '2.0.0'), (2, 1, '2.1.0'),
    (3, 2, '1.0.0'), (4, 2, '1.1.0'),
    (5, 3, '3.2'),
    (6, 4, '1.2.13'),
    (7, 5, '0.9');
INSERT INTO release_content VALUES
    (1, 1), (1, 3), (1, 6),
    (2, 2), (2, 3), (2, 5), (2, 6),
    (3, 2), (3, 4), (3, 5), (3, 6),
    (4, 7);
