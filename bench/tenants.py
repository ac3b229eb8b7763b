"""Resellers, departments and agents, made through the real services (so their documents, hashes
and natural keys are exactly the application's), then copied verbatim into other databases."""

from backend.core.db import Database
from backend.core.ids import new_id
from backend.core.tenancy import Actor
from backend.departments import service as departments
from backend.departments.schemas import DepartmentCreate
from backend.resellers import service as resellers
from backend.resellers.schemas import ResellerCreate
from backend.users import service as users
from backend.users.schemas import UserCreate
from bench.seed import Tenant

PASSWORD = "bench-pass-123"
TENANT_COLLECTIONS = ("resellers", "reseller_configs", "users", "departments", "natural_keys")


async def create_tenants(db: Database, count: int, *, departments_per_tenant: int, tag: str) -> list[Tenant]:
    admin = Actor(id=new_id(), role="admin", name="bench admin")
    tenants: list[Tenant] = []
    for r in range(count):
        reseller = await resellers.create(
            db,
            admin,
            data=ResellerCreate(name=f"Revenda {tag} {r:02d}", email=f"owner{r}.{tag}@bench.iaze", password=PASSWORD),
        )
        owner = Actor(id=reseller.owner_id, role="reseller", name=reseller.name, reseller_id=reseller.id)
        dept_ids: list[str] = []
        agents: list[Actor] = []
        for k in range(departments_per_tenant):
            dept = await departments.create(db, owner, data=DepartmentCreate(name=f"Departamento {k}"))
            dept_ids.append(dept.id)
            agent = await users.create_agent(
                db,
                owner,
                data=UserCreate(
                    name=f"Agente {r:02d}-{k}",
                    email=f"agent{r}-{k}.{tag}@bench.iaze",
                    password=PASSWORD,
                    department_ids=[dept.id],
                ),
            )
            agents.append(
                Actor(id=agent.id, role="agent", name=agent.name, reseller_id=reseller.id, department_ids=(dept.id,))
            )
        tenants.append(Tenant(reseller.id, owner, tuple(dept_ids), tuple(agents)))
    return tenants


async def copy_tenant_documents(source: Database, target: Database) -> int:
    """Everything the tenant setup wrote, byte for byte (no re-hashing of 80 passwords per size)."""
    copied = 0
    for name in TENANT_COLLECTIONS:
        docs = await source[name].find({}).to_list(length=None)
        if docs:
            await target[name].insert_many(docs, ordered=True)
            copied += len(docs)
    return copied
