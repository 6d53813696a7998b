-- One row that the readiness probe (`GET /ready`) rewrites: a database
-- whose disk is full still answers reads, so only a committed write says
-- that writes succeed.
CREATE TABLE health_probe (
    id        INTEGER PRIMARY KEY,
    probed_at BIGINT NOT NULL
);

INSERT INTO health_probe (id, probed_at) VALUES (1, 0);
