import { defineConfig } from 'vite';

// The SPA calls the API on its own origin (/api, websocket /api/v1/ws); in development and in
// `vite preview` these are proxied to the backend, in production nginx does the same.
const backend = process.env.BACKEND_URL || 'http://127.0.0.1:8000';
const proxy = {
  '/api': { target: backend, changeOrigin: true, ws: true },
  '/health': { target: backend, changeOrigin: true },
};

export default defineConfig({
  // No React plugin: esbuild compiles TSX with the automatic runtime.
  esbuild: { jsx: 'automatic' },
  server: { proxy },
  preview: { proxy },
  build: {
    outDir: 'dist',
    sourcemap: true,
    chunkSizeWarningLimit: 1200,
    rollupOptions: {
      // Mantine marks modules "use client" for React Server Components; meaningless in an SPA bundle.
      onwarn(warning, warn) {
        if (warning.code === 'MODULE_LEVEL_DIRECTIVE' || warning.code === 'SOURCEMAP_ERROR') return;
        warn(warning);
      },
    },
  },
});
