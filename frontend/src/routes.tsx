import { lazy, Suspense } from 'react';
import { Navigate, Outlet, Route, Routes, useLocation } from 'react-router';
import { homeFor, useAuth } from './auth/session';
import { LoginPage } from './auth/LoginPage';
import { Shell } from './layout/Shell';
import { AlertsProvider } from './features/alerts/AlertsProvider';
import { InboxPage } from './features/inbox/InboxPage';
import { DepartmentsPage } from './features/reseller/DepartmentsPage';
import { AgentsPage } from './features/reseller/AgentsPage';
import { ConnectionsPage } from './features/reseller/ConnectionsPage';
import { CompanyPage } from './features/reseller/CompanyPage';
import { ResellersPage } from './features/admin/ResellersPage';
import { OverviewPage } from './features/admin/OverviewPage';
import { ConversationsPage } from './features/admin/ConversationsPage';
import { ConversationPage } from './features/admin/ConversationPage';
import { NotFound } from './layout/NotFound';
import { ContactsPage } from './features/contacts/ContactsPage';
import { QuickRepliesPage } from './features/quickReplies/QuickRepliesPage';
import { ProfilePage } from './features/profile/ProfilePage';
import { ScheduledPage } from './features/scheduled/ScheduledPage';

// The dashboard's chart library is only loaded by those who open it.
const ReportsPage = lazy(() => import('./features/reports/ReportsPage').then((m) => ({ default: m.ReportsPage })));

function RequireAuth({ roles }: { roles?: string[] }) {
  const { session } = useAuth();
  const location = useLocation();
  if (!session) return <Navigate to="/login" replace state={{ from: location.pathname + location.search }} />;
  if (roles && !roles.includes(session.user.role)) return <Navigate to={homeFor(session.user)} replace />;
  return <Outlet />;
}

function Home() {
  const { session } = useAuth();
  return <Navigate to={session ? homeFor(session.user) : '/login'} replace />;
}

export function AppRoutes() {
  return (
    <Routes>
      <Route path="/login" element={<LoginPage />} />
      <Route element={<RequireAuth />}>
        <Route
          element={
            <AlertsProvider>
              <Shell />
            </AlertsProvider>
          }
        >
          <Route index element={<Home />} />
          <Route element={<RequireAuth roles={['agent', 'reseller']} />}>
            <Route path="atendimento" element={<InboxPage />} />
            <Route path="atendimento/:ticketId" element={<InboxPage />} />
            <Route path="contatos" element={<ContactsPage />} />
            <Route path="respostas" element={<QuickRepliesPage />} />
            <Route path="agendamentos" element={<ScheduledPage />} />
          </Route>
          <Route path="revenda" element={<RequireAuth roles={['reseller']} />}>
            <Route path="departamentos" element={<DepartmentsPage />} />
            <Route path="agentes" element={<AgentsPage />} />
            <Route path="whatsapp" element={<ConnectionsPage />} />
            <Route path="empresa" element={<CompanyPage />} />
          </Route>
          <Route path="admin" element={<RequireAuth roles={['admin']} />}>
            <Route path="revendas" element={<ResellersPage />} />
            <Route path="visao-geral" element={<OverviewPage />} />
            <Route path="conversas" element={<ConversationsPage />} />
            <Route path="conversas/:ticketId" element={<ConversationPage />} />
          </Route>
          <Route
            path="relatorios"
            element={
              <Suspense fallback={null}>
                <ReportsPage />
              </Suspense>
            }
          />
          <Route path="perfil" element={<ProfilePage />} />
          <Route path="*" element={<NotFound />} />
        </Route>
      </Route>
    </Routes>
  );
}
