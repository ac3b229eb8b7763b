// Runs once, on the first start of an empty data volume (the mongo image's initdb step), as root.
// The application gets a role with no remove/drop actions: persistence rule 1 is enforced by the
// database itself, not only by the code. The backup user reads everything (built-in `backup`) and
// owns only the scratch databases `backup verify` restores into and drops: a fixed set, because a
// MongoDB grant names one whole database (no prefixes) and a grant on every database would let it
// drop the live one. verify rotates through <verifyDb>_0 … <verifyDb>_<N-1> so that no name is
// dropped and recreated moments apart (scripts/common.py OpsSettings.scratch_names says why);
// <verifyDb> itself is what versions before that named it, kept so its leftover can be dropped.
// verifySlots is scripts/common.py VERIFY_SCRATCH_SLOTS (tests/scripts/test_compose.py ties them).
const dbName = process.env.MONGO_DB || "support_chat";
const verifyDb = process.env.BACKUP_VERIFY_DB || `${dbName}_verify`;
const verifySlots = 4;
const scratchDbs = [verifyDb];
for (let slot = 0; slot < verifySlots; slot++) {
  scratchDbs.push(`${verifyDb}_${slot}`);
}
const app = db.getSiblingDB(dbName);

app.createRole({
  role: "iazeApp",
  privileges: [
    {
      resource: { db: dbName, collection: "" },
      actions: [
        "find",
        "insert",
        "update",
        "createCollection",
        "createIndex",
        "listCollections",
        "listIndexes",
        "collStats",
        "dbStats",
      ],
    },
  ],
  roles: [],
});

app.createUser({
  user: process.env.MONGO_APP_USER,
  pwd: process.env.MONGO_APP_PASSWORD,
  roles: [{ role: "iazeApp", db: dbName }],
});

// deploy_check snapshot/verify (run in the backup container) record themselves in deploy_checks.
db.getSiblingDB("admin").createRole({
  role: "iazeDeployCheck",
  privileges: [{ resource: { db: dbName, collection: "deploy_checks" }, actions: ["find", "insert"] }],
  roles: [],
});

db.getSiblingDB("admin").createUser({
  user: process.env.MONGO_BACKUP_USER,
  pwd: process.env.MONGO_BACKUP_PASSWORD,
  roles: [
    { role: "backup", db: "admin" },
    { role: "read", db: dbName },
    ...scratchDbs.map((name) => ({ role: "dbOwner", db: name })),
    { role: "iazeDeployCheck", db: "admin" },
  ],
});
