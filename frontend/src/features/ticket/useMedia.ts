import { useQuery, useQueryClient, type QueryClient } from '@tanstack/react-query';
import { useEffect, useState } from 'react';
import { fetchBlob } from '../../api/client';
import type { MediaInfo } from './media';

const mediaKey = (media: MediaInfo) => ['media', media.url, media.sha256] as const;

function blobQuery(media: MediaInfo) {
  return {
    queryKey: mediaKey(media),
    queryFn: ({ signal }: { signal: AbortSignal }) => fetchBlob(media.url, signal),
    // The bytes behind a url and sha256 never change: fetched once while the thread is open.
    staleTime: Infinity,
    gcTime: 60_000,
  };
}

/** An object URL for the bytes of a ready attachment (fetched with the bearer token), revoked when
 * the component unmounts or the bytes change. `enabled: false` waits (a video until asked for). */
export function useMediaUrl(media: MediaInfo, enabled = true) {
  const query = useQuery({ ...blobQuery(media), enabled: enabled && media.status === 'ready' });
  const [url, setUrl] = useState<string | null>(null);
  const blob = query.data;
  useEffect(() => {
    if (!blob) return undefined;
    const objectUrl = URL.createObjectURL(blob);
    setUrl(objectUrl);
    return () => {
      URL.revokeObjectURL(objectUrl);
      setUrl(null);
    };
  }, [blob]);
  return { url, isLoading: query.isFetching && !url, error: query.error, refetch: query.refetch };
}

/** Saves the attachment under its original name: fetched with the token, then handed to the
 * browser's download through a short-lived object URL. */
export async function downloadMedia(client: QueryClient, media: MediaInfo): Promise<void> {
  const blob = await client.fetchQuery(blobQuery(media));
  const href = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = href;
  link.download = media.name || 'arquivo';
  link.rel = 'noopener';
  document.body.appendChild(link);
  link.click();
  link.remove();
  // The download has started from the URL; give the browser time to read it before freeing it.
  setTimeout(() => URL.revokeObjectURL(href), 60_000);
}

export function useDownload() {
  const client = useQueryClient();
  return (media: MediaInfo) => downloadMedia(client, media);
}
